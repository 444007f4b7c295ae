"""The plan of an update: which files move, which go, which merge, and what refuses it.

A pure function from the manifest's files, the staged snapshot, the local changes and the
policy for them (`Local`) to a `PendingUpdate`, or a `PullConflict` that changes nothing.
It asks the outside world two questions, and only where the answer matters: what stands
where a new file goes (`Standing`, from the index), and what our edit merged with the
branch's gives (bytes, or None when they conflict). Tests answer both from tables.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from client.index import ChangeKind, LocalChange, Standing
from client.manifest import FileRecord, PendingUpdate, PendingWrite
from client.staging import StagedFile, blob_sha
from providers.contract import FileMode
from providers.errors import InvalidRequest


class Local(enum.Enum):
    """What an update does with uncommitted changes."""

    KEEP = "keep"
    """Keep them; merge three ways where the branch changed the same file."""
    DISCARD = "discard"
    """Replace them with the branch's version."""
    REFUSE = "refuse"
    """Refuse the update when there are any."""


class PullConflict(Exception):
    """Upstream and local edits to the same files could not be merged, or files that
    meltano-forge does not track stand where the branch has files; nothing changed."""

    def __init__(self, paths: Sequence[str], in_the_way: Sequence[str] = ()) -> None:
        self.paths = tuple(sorted({*paths, *in_the_way}))
        if paths:
            reason = (
                f"Both you and the branch changed {_listed(paths)} and they do not merge "
                "cleanly; nothing was changed"
            )
            instruction = (
                "Commit your changes first (they go to a side branch if they conflict), "
                "or discard them (checkout --discard)"
            )
        else:
            reason = (
                f"{_listed(in_the_way)} already exist{'s' if len(in_the_way) == 1 else ''} "
                "here but not in the workspace, and the branch has files there; nothing "
                "was changed"
            )
            instruction = "Move them out of the way, or use another folder"
        super().__init__(f"{reason}. {instruction}.")


def _listed(paths: Sequence[str]) -> str:
    shown = sorted(paths)
    return ", ".join(shown[:10]) + (f" and {len(shown) - 10} more" if len(shown) > 10 else "")


def uncommitted(paths: Sequence[str]) -> InvalidRequest:
    """The refusal to switch or overwrite while there are uncommitted changes."""
    shown = ", ".join(paths[:5]) + (" …" if len(paths) > 5 else "")
    return InvalidRequest(
        f"{len(paths)} uncommitted change{'s' if len(paths) > 1 else ''} ({shown})",
        "Commit them, or pass --discard or --carry",
    )


def merge_text(base: bytes | None, ours: bytes | None, theirs: bytes | None) -> bytes | None:
    """A clean three-way merge of text, or None when it conflicts or is not text."""
    if ours == theirs:
        return ours
    if ours is None or theirs is None or b"\x00" in ours + theirs + (base or b""):
        return None
    import merge3

    m = merge3.Merge3(
        (base or b"").splitlines(True), ours.splitlines(True), theirs.splitlines(True)
    )
    if any(region[0] == "conflict" for region in m.merge_regions()):
        return None
    return b"".join(m.merge_lines())


@dataclass
class Update:
    """What an update did."""

    sha: str
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """A planned update: what to record and publish, and what to tell the caller."""

    pending: PendingUpdate
    update: Update
    rewrites: dict[str, bytes] = field(default_factory=dict)
    """Merged contents that replace a staged copy before publishing."""


Asked = Callable[[str, str, FileMode], Standing]
"""What stands where a file goes: (workspace path, blob SHA, mode) -> `Standing`."""
Merged = Callable[[str], bytes | None]
"""Our edit of a file merged with the branch's staged version, or None on conflict."""


def plan_update(
    files: Mapping[str, FileRecord],
    snapshot: Mapping[str, StagedFile],
    changes: Mapping[str, LocalChange],
    local: Local,
    into: PendingUpdate,
    *,
    standing: Asked,
    merge: Merged,
) -> Plan:
    """Plan moving the workspace from `files` to `snapshot` into `into` (the empty pending
    update, which names the branch, commit and staging folder); `PullConflict` when local
    edits and the branch's do not merge, or untracked things stand where the branch has
    files. The policy for local changes is `local`; REFUSE is the caller's, before staging."""
    plan = Plan(into, Update(into.sha))
    conflicts: list[str] = []
    in_the_way: list[str] = []
    leaving = set(files) - set(snapshot)
    discard = local is Local.DISCARD
    for rel, new in snapshot.items():
        record = files.get(rel)
        upstream_changed = record is None or record.sha != new.sha or record.mode != new.mode
        change = changes.get(rel)
        if not upstream_changed and not (discard and change is not None):
            continue
        write = PendingWrite(new.sha, new.sha, int(new.mode), new.mtime_ns, new.size)
        if discard and change is not None:  # the file itself goes; its way must be clear
            way = standing(rel, new.sha, new.mode).way
            if way is not None and way not in leaving:
                in_the_way.append(rel)
                continue
        elif record is None:
            found = standing(rel, new.sha, new.mode)
            if found.same:
                write.content_sha = new.sha  # already there: adopt it
            elif found.blocks(leaving):
                in_the_way.append(rel)
                continue
        elif change is not None and local is Local.KEEP:
            mergeable = change.kind is ChangeKind.MODIFIED and FileMode.SYMLINK not in (
                new.mode,
                change.mode,
            )
            merged = merge(rel) if mergeable else None
            if merged is None:
                conflicts.append(rel)
                continue
            write.content_sha = blob_sha(merged)
            if write.content_sha != new.sha:
                plan.rewrites[rel] = merged
                write.staged_mtime_ns = 0  # the staged copy is no longer as written
                plan.update.merged.append(rel)
        into.writes[rel] = write
        plan.update.written.append(rel)
    for rel, old in files.items():
        if rel in snapshot:
            continue
        change = changes.get(rel)
        if change is None:
            into.deletes[rel] = old
        elif discard or change.kind is ChangeKind.DELETED:
            into.deletes[rel] = None
        else:
            conflicts.append(rel)
            continue
        plan.update.deleted.append(rel)
    if conflicts or in_the_way:
        raise PullConflict(conflicts, in_the_way)
    return plan


__all__ = [
    "Local",
    "Plan",
    "PullConflict",
    "Update",
    "merge_text",
    "plan_update",
    "uncommitted",
]
