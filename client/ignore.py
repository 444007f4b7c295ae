"""Which files of a workspace git would ignore: `.gitignore` semantics through pathspec.

Nested `.gitignore` files apply below their folder, later and deeper patterns win,
negation re-includes, and a leading slash anchors to the file's folder. `.meltano/` and
`.meltano-forge/` are always ignored. Tracked files are never ignored (git's rule).
"""

from __future__ import annotations

from pathlib import Path

import pathspec

ALWAYS_IGNORED = (".meltano/", ".meltano-forge/", ".git/")


def _rebase(pattern: str, folder: str) -> str | None:
    """A pattern from `folder/.gitignore`, rewritten relative to the workspace root."""
    line = pattern.rstrip("\n")
    if not line.strip() or line.startswith("#"):
        return None
    negate = line.startswith("!")
    body = line[1:] if negate else line
    if not folder:
        return line
    anchored = "/" in body.rstrip("/")
    body = body.lstrip("/")
    rebased = f"{folder}/{body}" if anchored else f"{folder}/**/{body}"
    return ("!" if negate else "") + rebased


class IgnoreRules:
    """`.gitignore` files of a workspace, combined; a top-down walk `add`s each folder's
    file as it enters the folder, so parents' patterns come before their children's."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lines = [f"/{p}" for p in ALWAYS_IGNORED]
        self.spec = pathspec.GitIgnoreSpec.from_lines(self.lines)

    def add(self, folder: str) -> None:
        """Take in `folder/.gitignore`."""
        text = (self.root / folder / ".gitignore").read_text(errors="replace")
        self.lines += [r for r in (_rebase(p, folder) for p in text.splitlines()) if r]
        self.spec = pathspec.GitIgnoreSpec.from_lines(self.lines)

    def ignored(self, path: str, is_dir: bool = False) -> bool:
        """Whether git would ignore `path` (relative, POSIX) if it were untracked."""
        return self.spec.match_file(path + "/" if is_dir else path)
