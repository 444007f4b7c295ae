"""Commit a workspace's changes: rebase over disjoint upstream changes, merge overlapping
text three ways (merge3), and when that fails save the change set on a side branch and
return the workspace to the branch head, so nothing is lost and nothing is committed twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from client.check_gate import CheckRefused, Verdict, judge
from client.guard import HeldBack, screen
from client.manifest import Rescue
from client.workspace import LocalChange, Workspace, merge_text
from providers.contract import Author, FileChange, Forge
from providers.errors import (
    AlreadyExists,
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unavailable,
)

UNPUSHABLE = (PermissionDenied, AuthenticationFailed, Unavailable, RateLimited)
"""Commit failures after which only a local rescue bundle can keep the change: the token
may not push, or the forge stayed down after retries."""


@dataclass
class CommitOutcome:
    """What a commit did."""

    branch: str
    sha: str | None = None
    paths: list[str] = field(default_factory=list)
    held: list[HeldBack] = field(default_factory=list)
    rebased: bool = False
    merged: list[str] = field(default_factory=list)
    side_branch: str | None = None
    conflicts: tuple[str, ...] = ()
    check: dict[str, Any] | None = None
    """The check of what the branch holds once the change lands (`Verdict.as_dict`), when
    the commit was checked."""
    check_failed: bool = False
    """True when the check refused the change (a runner's went to a rescue branch)."""


def _read(forge: Forge, sha: str, path: str) -> bytes | None:
    try:
        return forge.read_file(sha, path)
    except NotFound:
        return None


@dataclass(frozen=True)
class Screened:
    """The first half of every commit: what may go, what the guard held back, and the
    change set (repository paths) of what may go."""

    keep: list[LocalChange]
    held: list[HeldBack]
    changes: list[FileChange]

    def outcome(self, branch: str) -> CommitOutcome:
        """The outcome so far: what goes to `branch` and what was held back."""
        return CommitOutcome(branch, paths=[c.path for c in self.changes], held=self.held)


def screen_changes(
    ws: Workspace,
    local: list[LocalChange] | None = None,
    *,
    secret_globs: Sequence[str] = (),
    allowed: Sequence[str] = (),
) -> Screened:
    """Screen the workspace's changes (`local`, when the caller already walked it) for
    secrets, refuse a link out of the project, and build the change set: before anything
    reaches the forge, whatever branch it goes to."""
    if local is None:
        local = ws.status().changes
    keep, held = screen(ws.root, local, secret_globs, allowed)
    if not keep:
        return Screened([], held, [])
    ws.check_links_after(keep)
    return Screened(keep, held, ws.change_set(keep))


@dataclass(frozen=True)
class SideBranch:
    """A change set saved on a side branch (and taken out of the workspace)."""

    name: str
    sha: str
    conflicts: tuple[str, ...]


def saved(outcome: CommitOutcome, side: SideBranch) -> CommitOutcome:
    """The outcome of a commit whose change went to `side` instead of its branch."""
    return replace(
        outcome, side_branch=side.name, sha=side.sha, conflicts=side.conflicts, merged=[]
    )


class WorkspaceBase:
    """The project at the workspace's base commit, read without the forge where it can be:
    the manifest lists its files, a file the workspace has not changed is read from the
    folder, and only a changed one (that the check opens) from the forge at the base
    commit, once; without `fetch`, a changed file's base is taken as unknown (absent)."""

    def __init__(self, ws: Workspace, changed: Iterable[str], *, fetch: bool) -> None:
        from client.check import FolderReader

        self.ws, self.changed, self.fetch = ws, frozenset(changed), fetch
        self.folder = FolderReader(ws.root)
        self.fetched: dict[str, bytes | None] = {}

    def paths(self) -> Iterable[str]:
        """The base commit's files below the project path (from the manifest)."""
        return self.ws.manifest.files.keys()

    def read(self, path: str) -> bytes | None:
        """A file as the base commit holds it."""
        manifest = self.ws.manifest
        if path not in manifest.files:
            return None
        if path not in self.changed:
            return self.folder.read(path)
        if not self.fetch:
            return None
        if path not in self.fetched:
            self.fetched[path] = _read(self.ws.forge, manifest.base_sha, manifest.repo_path(path))
        return self.fetched[path]


def verify(
    ws: Workspace, screened: Screened, local: Sequence[LocalChange], *, fetch_base: bool = True
) -> Verdict:
    """The gate's verdict on what the workspace's branch holds once `screened` lands on its
    base. `fetch_base` reads the base of the changed files the check opens from the forge
    first (for the rules that compare, such as a pip_url changed without its lock file);
    without it, the forge is asked only when the result has errors, to see whether the
    base had them already: a passing change then costs no forge request at all."""
    from client.check import check_change, check_project

    manifest = ws.manifest
    changes: dict[str, bytes | None] = {}
    for change in screened.changes:
        rel = manifest.workspace_path(change.path)
        if rel is not None:
            changes[rel] = change.content
    changed = [c.path for c in local]
    base = WorkspaceBase(ws, changed, fetch=fetch_base)
    result = check_change(base, changes)
    if not result.ok and not fetch_base:
        base = WorkspaceBase(ws, changed, fetch=True)
        result = check_change(base, changes)
    return judge(result, lambda: check_project(base))


def commit(
    ws: Workspace,
    message: str,
    author: Author | None = None,
    *,
    secret_globs: Sequence[str] = (),
    allowed: Sequence[str] = (),
    local: list[LocalChange] | None = None,
    check: bool = False,
    fetch_base: bool = True,
) -> CommitOutcome:
    """Commit the workspace's changes (`local`, when the caller already walked it).

    With `check`, the change is checked first (`verify`, with `fetch_base`), and
    `CheckRefused` is raised, before anything reaches the forge, when the gate refuses it."""
    manifest = ws.manifest
    if local is None:
        local = ws.status().changes
    screened = screen_changes(ws, local, secret_globs=secret_globs, allowed=allowed)
    outcome = screened.outcome(manifest.branch)
    if not screened.keep:
        return outcome
    if check:
        verdict = verify(ws, screened, local, fetch_base=fetch_base)
        branch = f"'{manifest.branch}' @ {manifest.base_sha[:12]}"
        if not verdict.allowed:
            summary = verdict.summary(branch)
            raise CheckRefused(
                verdict,
                summary[:1].upper() + summary[1:] + ", so nothing was committed",
                "Fix what the check lists, or commit anyway with --no-verify",
            )
        outcome.check = {**verdict.as_dict(), "summary": verdict.summary(branch)}
    keep, changes = screened.keep, screened.changes
    try:
        result = ws.forge.commit(manifest.branch, manifest.base_sha, changes, message, author)
    except Conflict as conflict:
        return _resolve(ws, screened, conflict, message, author, outcome)
    outcome.sha, outcome.rebased = result.sha, result.rebased
    if result.rebased:  # bring the upstream commits in; ours are already on disk
        ws.update(manifest.branch, result.sha)
    else:
        ws.record_committed(keep, result.sha)
    return outcome


def _resolve(
    ws: Workspace,
    screened: Screened,
    conflict: Conflict,
    message: str,
    author: Author | None,
    outcome: CommitOutcome,
) -> CommitOutcome:
    """The same files changed upstream: merge them three ways, or save a side branch."""
    forge, manifest = ws.forge, ws.manifest
    head = forge.branch(manifest.branch).head
    modes = {e.path: e.mode for e in forge.list_tree(head)}
    merged: list[FileChange] = []
    for change in screened.changes:
        if change.path not in conflict.paths:
            merged.append(change)
            continue
        base = _read(forge, manifest.base_sha, change.path)
        theirs = _read(forge, head, change.path)
        result = merge_text(base, change.content, theirs)
        if result is None or change.path not in modes:
            return saved(outcome, side_branch(ws, screened, message, author, conflict.paths))
        merged.append(FileChange.put(change.path, result, change.mode, modes[change.path]))
        outcome.merged.append(change.path)
    try:
        landed = forge.commit(manifest.branch, head, merged, message, author)
    except Conflict as again:
        return saved(outcome, side_branch(ws, screened, message, author, again.paths))
    ws.update(manifest.branch, landed.sha)  # the merge comes in over our own edits
    outcome.sha, outcome.rebased = landed.sha, True
    return outcome


def side_branch(
    ws: Workspace,
    screened: Screened,
    message: str,
    author: Author | None,
    paths: Sequence[str],
    *,
    name: str | None = None,
    reason: str = "conflict",
) -> SideBranch:
    """Save the change set on `name` (default `{branch}-conflict-{shortsha}`, from the
    workspace's base), record it, and put the workspace back at the branch's base: the
    change is safe on the side branch and no later run commits it again."""
    forge, manifest = ws.forge, ws.manifest
    name = name or f"{manifest.branch}-conflict-{manifest.base_sha[:7]}"
    for attempt in range(1, 100):
        candidate = name if attempt == 1 else f"{name}-{attempt}"
        try:
            forge.create_branch(candidate, manifest.base_sha)
        except AlreadyExists:
            continue
        result = forge.commit(candidate, manifest.base_sha, screened.changes, message, author)
        keep = [c.path for c in screened.keep]
        manifest.rescues.append(Rescue(candidate, manifest.base_sha, keep, reason, time.time()))
        manifest.save(ws.root)
        ws.restore(keep)
        return SideBranch(candidate, result.sha, tuple(paths))
    msg = f"Could not find a free side branch name for {name}"
    raise AlreadyExists(msg)
