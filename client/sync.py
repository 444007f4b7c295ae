"""Commit and pull for a workspace: rebase disjoint changes, merge overlapping text three
ways (merge3), and when that fails save the change set on a side branch, never lose it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import merge3

from client import workspace
from client.guard import HeldBack, screen
from client.manifest import Manifest
from providers.contract import Author, FileChange, FileMode, Forge
from providers.errors import AlreadyExists, Conflict, NotFound
from providers.gitobjects import blob_sha


class PullConflict(Exception):
    """Upstream and local edits to the same files could not be merged."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = tuple(paths)
        super().__init__(
            f"Both you and the branch changed {', '.join(self.paths)} and they do not merge "
            "cleanly. "
            "Commit your changes first (they go to a side branch if they conflict), or discard them"
        )


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


def merge_text(base: bytes | None, ours: bytes | None, theirs: bytes | None) -> bytes | None:
    """A clean three-way merge of text, or None when it conflicts or is not text."""
    if ours == theirs:
        return ours
    if ours is None or theirs is None or b"\x00" in ours + theirs + (base or b""):
        return None
    m = merge3.Merge3(
        (base or b"").splitlines(True), ours.splitlines(True), theirs.splitlines(True)
    )
    if any(region[0] == "conflict" for region in m.merge_regions()):
        return None
    return b"".join(m.merge_lines())


def _read(forge: Forge, sha: str, path: str) -> bytes | None:
    try:
        return forge.read_file(sha, path)
    except NotFound:
        return None


def commit(
    forge: Forge,
    root: Path,
    manifest: Manifest,
    message: str,
    author: Author | None = None,
    *,
    secret_globs: Sequence[str] = (),
    allowed: Sequence[str] = (),
    side_suffix: str = "conflict",
    local: list[workspace.LocalChange] | None = None,
) -> CommitOutcome:
    """Commit the workspace's changes (`local`, when the caller already walked it)."""
    outcome = CommitOutcome(manifest.branch)
    if local is None:
        local = workspace.status(root, manifest).changes
    keep, outcome.held = screen(root, local, secret_globs, allowed)
    if not keep:
        return outcome
    changes = workspace.change_set(root, manifest, keep)
    outcome.paths = [c.path for c in changes]
    old_base = manifest.base_sha
    try:
        result = forge.commit(manifest.branch, old_base, changes, message, author)
    except Conflict as conflict:
        return _resolve(
            forge, root, manifest, keep, changes, conflict, message, author, outcome, side_suffix
        )
    workspace.record_committed(root, manifest, keep, result.sha)
    outcome.sha, outcome.rebased = result.sha, result.rebased
    if result.rebased and result.parent:
        _apply_upstream(forge, root, manifest, old_base, result.parent, exclude=set(outcome.paths))
    return outcome


def _resolve(
    forge: Forge,
    root: Path,
    manifest: Manifest,
    keep: list[workspace.LocalChange],
    changes: list[FileChange],
    conflict: Conflict,
    message: str,
    author: Author | None,
    outcome: CommitOutcome,
    side_suffix: str,
) -> CommitOutcome:
    head = forge.branch(manifest.branch).head
    modes = {e.path: e.mode for e in forge.list_tree(head)}
    merged: list[FileChange] = []
    for change in changes:
        if change.path not in conflict.paths:
            merged.append(change)
            continue
        base = _read(forge, manifest.base_sha, change.path)
        theirs = _read(forge, head, change.path)
        result = merge_text(base, change.content, theirs)
        if result is None or change.path not in modes:
            return _side_branch(
                forge, manifest, changes, message, author, outcome, conflict.paths, side_suffix
            )
        merged.append(FileChange.put(change.path, result, change.mode, modes[change.path]))
        outcome.merged.append(change.path)
    try:
        landed = forge.commit(manifest.branch, head, merged, message, author)
    except Conflict as again:
        return _side_branch(
            forge, manifest, changes, message, author, outcome, again.paths, side_suffix
        )
    prefix = manifest.project_path + "/" if manifest.project_path else ""
    for change in merged:
        if change.path in outcome.merged and change.content is not None:
            workspace.write_file(root, change.path[len(prefix) :], change.content, change.mode)
    old_base = manifest.base_sha
    workspace.record_committed(root, manifest, keep, landed.sha)
    _apply_upstream(forge, root, manifest, old_base, head, exclude={c.path for c in merged})
    outcome.sha, outcome.rebased = landed.sha, True
    return outcome


def _side_branch(
    forge: Forge,
    manifest: Manifest,
    changes: list[FileChange],
    message: str,
    author: Author | None,
    outcome: CommitOutcome,
    paths: Sequence[str],
    suffix: str,
) -> CommitOutcome:
    """Save the change set on `{branch}-{suffix}-{shortsha}` (from our base) so nothing is lost."""
    name = f"{manifest.branch}-{suffix}-{manifest.base_sha[:7]}"
    for attempt in range(1, 100):
        candidate = name if attempt == 1 else f"{name}-{attempt}"
        try:
            forge.create_branch(candidate, manifest.base_sha)
        except AlreadyExists:
            continue
        result = forge.commit(candidate, manifest.base_sha, changes, message, author)
        outcome.side_branch, outcome.sha, outcome.conflicts = candidate, result.sha, tuple(paths)
        outcome.merged = []
        return outcome
    msg = f"Could not find a free side branch name for {name}"
    raise AlreadyExists(msg)


def _apply_upstream(
    forge: Forge, root: Path, manifest: Manifest, old: str, new: str, exclude: set[str]
) -> None:
    """Bring upstream changes between `old` and `new` into the folder (untouched files only)."""
    prefix = manifest.project_path + "/" if manifest.project_path else ""
    upstream = {p for p in forge.changed_paths(old, new) if p.startswith(prefix)} - exclude
    if not upstream:
        return
    modes = {e.path: e.mode for e in forge.list_tree(new)}
    for path in sorted(upstream):
        rel = path[len(prefix) :]
        if path not in modes:
            if (root / rel).is_symlink() or (root / rel).exists():
                (root / rel).unlink()
            manifest.files.pop(rel, None)
            continue
        manifest.files[rel] = workspace.write_file(
            root, rel, forge.read_file(new, path), modes[path]
        )
    manifest.save(root)


def pull(forge: Forge, root: Path, manifest: Manifest) -> list[str]:
    """Bring the workspace to the branch head, keeping local edits (merging when both sides
    changed a file). Refuses with `PullConflict`, changing nothing, when a merge fails."""
    head = forge.branch(manifest.branch).head
    if head == manifest.base_sha:
        return []
    prefix = manifest.project_path + "/" if manifest.project_path else ""
    upstream = sorted(
        p for p in forge.changed_paths(manifest.base_sha, head) if p.startswith(prefix)
    )
    local = {c.path: c for c in workspace.status(root, manifest).changes}
    modes = {e.path: e.mode for e in forge.list_tree(head)}
    plan: list[tuple[str, bytes | None, FileMode, bytes | None]] = []
    failed = []
    for path in upstream:
        rel = path[len(prefix) :]
        theirs = forge.read_file(head, path) if path in modes else None
        if rel in local:
            ours = None if local[rel].kind == "deleted" else workspace.read_local(root, rel)[0]
            merged = merge_text(_read(forge, manifest.base_sha, path), ours, theirs)
            if merged is None:
                failed.append(rel)
                continue
            plan.append((rel, merged, modes.get(path, FileMode.REGULAR), theirs))
        else:
            plan.append((rel, theirs, modes.get(path, FileMode.REGULAR), None))
    if failed:
        raise PullConflict(failed)
    for rel, data, mode, merged_from in plan:
        if data is None:
            if (root / rel).is_symlink() or (root / rel).exists():
                (root / rel).unlink()
            manifest.files.pop(rel, None)
            continue
        record = workspace.write_file(root, rel, data, mode)
        if merged_from is not None:
            record.sha = blob_sha(merged_from)
            record.size = -1  # the merged file differs from the branch: a local change
        manifest.files[rel] = record
    manifest.base_sha = head
    manifest.save(root)
    return [rel for rel, *_ in plan]
