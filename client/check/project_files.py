"""Where a project's files come from: a workspace folder, a forge ref, or a mapping.

The check is a pure function of the project's files, so the same code runs on a workspace,
on a branch through `Forge.list_tree`/`read_file`, and in the service. A reader only needs
to list paths and read the few files the check opens (`meltano.yml`, its `include_paths`
and the lock files under `plugins/`): on a forge that is one tree request plus one read per
file, never an archive of the whole project.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Protocol, runtime_checkable

from providers.contract import Forge

SKIPPED_FOLDERS = frozenset({".git", ".meltano", ".meltano-forge"})
"""Meltano's own state, git's and the workspace's (`client.manifest.STATE_DIR`): never
project configuration, often huge."""


@runtime_checkable
class ProjectReader(Protocol):
    """A project's files, by project-relative POSIX path."""

    def paths(self) -> Iterable[str]:
        """Every file of the project."""
        ...

    def read(self, path: str) -> bytes | None:
        """A file's bytes, or None when it is not there."""
        ...


class MappingReader:
    """Files held in memory (the service, the editor's draft, tests)."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = files

    def paths(self) -> Iterable[str]:
        """Every path of the mapping."""
        return self.files.keys()

    def read(self, path: str) -> bytes | None:
        """The bytes held for `path`."""
        return self.files.get(path)


class FolderReader:
    """A workspace folder; `.git` and `.meltano` are skipped, symlinks are not followed out."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def paths(self) -> Iterable[str]:
        """Every regular file below the root, as a POSIX path."""
        found: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if d not in SKIPPED_FOLDERS]
            rel = Path(folder).relative_to(self.root).as_posix()
            prefix = "" if rel == "." else rel + "/"
            found.extend(prefix + name for name in files)
        return found

    def read(self, path: str) -> bytes | None:
        """The file's bytes, when it is a file inside the root."""
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            return None
        return target.read_bytes()


class ForgeReader:
    """A commit on the forge: one tree listing, then only the files the check reads."""

    def __init__(self, forge: Forge, sha: str, project_path: str = "") -> None:
        self.forge, self.sha = forge, sha
        self.prefix = project_path.strip("/") + "/" if project_path.strip("/") else ""
        self._paths: dict[str, None] | None = None

    def paths(self) -> Iterable[str]:
        """The commit's files below the project path (one `list_tree` request)."""
        if self._paths is None:
            n = len(self.prefix)
            self._paths = {
                e.path[n:]: None
                for e in self.forge.list_tree(self.sha)
                if e.path.startswith(self.prefix)
            }
        return self._paths.keys()

    def read(self, path: str) -> bytes | None:
        """One file at the commit, or None when the tree does not hold it."""
        if path not in self.paths():
            return None
        return self.forge.read_file(self.sha, self.prefix + path)


class OverlayReader:
    """A project with a change set laid over it: what the project holds once a commit lands
    (`None` deletes a path). Files the change does not touch are read from `below`."""

    def __init__(self, below: ProjectReader, changes: Mapping[str, bytes | None]) -> None:
        self.below, self.changes = below, changes

    def paths(self) -> Iterable[str]:
        """The paths below, minus the deleted ones, plus the added ones."""
        kept = {p: None for p in self.below.paths() if self.changes.get(p, b"") is not None}
        kept.update((p, None) for p, data in self.changes.items() if data is not None)
        return kept.keys()

    def read(self, path: str) -> bytes | None:
        """The changed bytes of `path`, or what the project below holds."""
        if path in self.changes:
            return self.changes[path]
        return self.below.read(path)


def reader_for(files: Mapping[str, bytes] | ProjectReader) -> ProjectReader:
    """A reader for whatever the caller has."""
    if isinstance(files, ProjectReader):
        return files
    return MappingReader(files)


@cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A `pathlib.Path.glob` pattern as a regex over POSIX paths (Meltano globs
    `include_paths` with pathlib: `**` is zero or more folders, `*` stays in one)."""
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    out = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out += "(?:[^/]+/)*" if not last else "(?:[^/]+/)*[^/]+"
            continue
        piece = ""
        j = 0
        while j < len(part):
            c = part[j]
            if c == "*":
                piece += "[^/]*"
            elif c == "?":
                piece += "[^/]"
            elif c == "[":
                end = part.find("]", j + 1)
                if end == -1:
                    piece += re.escape(c)
                else:
                    body = part[j + 1 : end]
                    if body.startswith("!"):
                        body = "^" + body[1:]
                    piece += f"[{body}]"
                    j = end
            else:
                piece += re.escape(c)
            j += 1
        out += piece + ("" if last else "/")
    return re.compile(out + r"\Z")


def glob_matches(pattern: str, paths: Iterable[str]) -> list[str]:
    """The paths a relative include pattern matches, sorted."""
    regex = _glob_regex(pattern)
    return sorted(p for p in paths if regex.match(p))


def is_outside(pattern: str) -> bool:
    """Whether a pattern reaches outside the project (absolute, `..`, `~`)."""
    return pattern.startswith(("/", "~")) or ".." in pattern.split("/")
