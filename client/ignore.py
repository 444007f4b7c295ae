"""Which files of a workspace git would ignore: `.gitignore` semantics through pathspec.

Nested `.gitignore` files apply below their folder, later and deeper patterns win,
negation re-includes, and a leading slash anchors to the file's folder. `.meltano/` and
`.meltano-forge/` are always ignored. Tracked files are never ignored (git's rule).
"""

from __future__ import annotations

import os
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
    """`.gitignore` files of a workspace, combined. `scan=True` reads them all up front;
    a top-down walk can instead `add` each folder's file as it enters the folder."""

    def __init__(self, root: Path, *, scan: bool = True) -> None:
        self.root = root
        self.lines = [f"/{p}" for p in ALWAYS_IGNORED]
        if scan:
            for folder, dirs, files in os.walk(root):
                rel = os.path.relpath(folder, root).replace(os.sep, "/")
                rel = "" if rel == "." else rel
                dirs[:] = sorted(d for d in dirs if f"{rel}/{d}/".lstrip("/") not in ALWAYS_IGNORED)
                if ".gitignore" in files:
                    self._extend(rel)
        self.spec = pathspec.GitIgnoreSpec.from_lines(self.lines)

    def _extend(self, folder: str) -> None:
        text = (self.root / folder / ".gitignore").read_text(errors="replace")
        self.lines += [r for r in (_rebase(p, folder) for p in text.splitlines()) if r]

    def add(self, folder: str) -> None:
        """Take in `folder/.gitignore` (deeper files are added after their parents)."""
        self._extend(folder)
        self.spec = pathspec.GitIgnoreSpec.from_lines(self.lines)

    def ignored(self, path: str, is_dir: bool = False) -> bool:
        """Whether git would ignore `path` (relative, POSIX) if it were untracked."""
        return self.spec.match_file(path + "/" if is_dir else path)
