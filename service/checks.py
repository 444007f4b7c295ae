"""The project check at a commit, as the service runs it (SPEC §9): the compare page,
promotion, the editor's live check and pull-request statuses all ask here, so a commit is
read from the forge once and checked once.

A commit never changes, so what was read at a SHA (its tree, the few files the check opens)
is kept, a few commits per project, and every later check of a draft on that commit costs no
forge request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from client.check import CheckResult, ForgeReader, check_change, check_project
from service.deps import ProjectContext

KEPT_COMMITS = 32
"""Commits whose files are kept, across projects (each holds a tree listing and the few
files the check read: kilobytes to a few megabytes for 100,000 files)."""


class _CommitFiles:
    """A ForgeReader whose answers are kept: a commit's tree and files never change."""

    def __init__(self, reader: ForgeReader) -> None:
        self._reader = reader
        self._paths: list[str] | None = None
        self._files: dict[str, bytes | None] = {}
        self._lock = threading.Lock()

    def paths(self) -> Iterable[str]:
        """The commit's paths (one tree request, the first time)."""
        with self._lock:
            if self._paths is None:
                self._paths = list(self._reader.paths())
            return self._paths

    def read(self, path: str) -> bytes | None:
        """A file at the commit (one request, the first time)."""
        with self._lock:
            if path not in self._files:
                self._files[path] = self._reader.read(path)
            return self._files[path]


_kept: OrderedDict[tuple[str, str, str], _CommitFiles] = OrderedDict()
_kept_lock = threading.Lock()


def files_at(ctx: ProjectContext, sha: str) -> _CommitFiles:
    """The project's files at commit `sha` (a full SHA), read once and kept."""
    key = (ctx.config.name, ctx.config.project_path, sha)
    with _kept_lock:
        found = _kept.get(key)
        if found is None:
            found = _CommitFiles(ForgeReader(ctx.forge, sha, ctx.config.project_path))
            _kept[key] = found
            while len(_kept) > KEPT_COMMITS:
                _kept.popitem(last=False)
        else:
            _kept.move_to_end(key)
        return found


def check_at(ctx: ProjectContext, sha: str, environment: str | None = None) -> CheckResult:
    """The check of the project at commit `sha`."""
    return check_project(files_at(ctx, sha), environment=environment)


def check_draft(ctx: ProjectContext, sha: str, changes: Mapping[str, bytes | None]) -> CheckResult:
    """The check of what the project holds once `changes` (project-relative paths) land on
    commit `sha`: a draft in the editor, a settings form's edit."""
    return check_change(files_at(ctx, sha), changes)


def forget() -> None:
    """Drop every kept commit (tests; a project removed from the projects file)."""
    with _kept_lock:
        _kept.clear()
