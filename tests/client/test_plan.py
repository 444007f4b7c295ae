"""The plan of an update, from tables: no forge, no disk.

Each row gives the manifest's files, the staged snapshot, the local changes, the policy,
what stands where new files go and what merges give, and expects either what the pending
update writes, deletes and merges, or the conflict that refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from client.index import ChangeKind, LocalChange, Standing
from client.manifest import FileRecord, PendingUpdate
from client.plan import Local, PullConflict, plan_update
from client.staging import StagedFile, blob_sha
from providers.contract import FileMode

REG, LINK = FileMode.REGULAR, FileMode.SYMLINK
OLD, NEW, MINE = blob_sha(b"old\n"), blob_sha(b"new\n"), blob_sha(b"mine\n")
MERGED = b"mine\nnew\n"


def record(sha: str = OLD, mode: FileMode = REG) -> FileRecord:
    return FileRecord(sha, int(mode), 4, 1)


def staged(sha: str = NEW, mode: FileMode = REG) -> StagedFile:
    return StagedFile(sha, mode, 4, "copy", 7)


def changed(path: str, kind: ChangeKind = ChangeKind.MODIFIED, mode: FileMode = REG) -> LocalChange:
    return LocalChange(path, kind, None if kind is ChangeKind.DELETED else mode, REG)


@dataclass
class Row:
    files: dict[str, FileRecord]
    snapshot: dict[str, StagedFile]
    changes: list[LocalChange] = field(default_factory=list)
    local: Local = Local.KEEP
    standing: dict[str, Standing] = field(default_factory=dict)
    merges: dict[str, bytes | None] = field(default_factory=dict)
    writes: dict[str, str] = field(default_factory=dict)
    """Expected writes: path -> the blob SHA of what lands on disk."""
    deletes: dict[str, bool] = field(default_factory=dict)
    """Expected deletions: path -> only while unchanged (True) or unconditionally."""
    merged: list[str] = field(default_factory=list)
    conflict: tuple[str, ...] = ()
    asked: set[str] | None = None
    """Paths the plan may ask about (standing or merge); None: exactly those in the row."""


ROWS = {
    "an unchanged file stays": Row({"a": record(NEW)}, {"a": staged()}),
    "an upstream change is written": Row({"a": record()}, {"a": staged()}, writes={"a": NEW}),
    "a mode change alone is written": Row(
        {"a": record(NEW)}, {"a": staged(mode=FileMode.EXECUTABLE)}, writes={"a": NEW}
    ),
    "a new file goes where nothing stands": Row(
        {}, {"a": staged()}, standing={"a": Standing()}, writes={"a": NEW}
    ),
    "an identical file is adopted": Row(
        {}, {"a": staged()}, standing={"a": Standing(same=True)}, writes={"a": NEW}
    ),
    "a different untracked file is in the way": Row(
        {}, {"a": staged()}, standing={"a": Standing(here=frozenset({"a"}))}, conflict=("a",)
    ),
    "a folder of leaving files is no obstacle": Row(
        {"a/x": record()},
        {"a": staged()},
        standing={"a": Standing(here=frozenset({"a/x"}))},
        writes={"a": NEW},
        deletes={"a/x": True},
    ),
    "a folder that also holds an untracked link is in the way": Row(
        {"a/x": record()},
        {"a": staged()},
        standing={"a": Standing(here=frozenset({"a/x", "a/link"}))},
        conflict=("a",),
    ),
    "a link on the way of a new file is in the way": Row(
        {}, {"d/a": staged()}, standing={"d/a": Standing(way="d")}, conflict=("d/a",)
    ),
    "a tracked link on the way that leaves is no obstacle": Row(
        {"d": record(mode=LINK)},
        {"d/a": staged()},
        standing={"d/a": Standing(way="d")},
        writes={"d/a": NEW},
        deletes={"d": True},
    ),
    "both sides changed and merge cleanly": Row(
        {"a": record()},
        {"a": staged()},
        [changed("a")],
        merges={"a": MERGED},
        writes={"a": blob_sha(MERGED)},
        merged=["a"],
    ),
    "a merge that gives the branch's version is no merge": Row(
        {"a": record()},
        {"a": staged()},
        [changed("a")],
        merges={"a": b"new\n"},
        writes={"a": NEW},
    ),
    "both sides changed and conflict": Row(
        {"a": record()}, {"a": staged()}, [changed("a")], merges={"a": None}, conflict=("a",)
    ),
    "a local deletion of a file the branch changed conflicts, unasked": Row(
        {"a": record()},
        {"a": staged()},
        [changed("a", ChangeKind.DELETED)],
        conflict=("a",),
        asked=set(),
    ),
    "a link changed on both sides conflicts, unasked": Row(
        {"a": record(mode=LINK)},
        {"a": staged(mode=LINK)},
        [changed("a", mode=LINK)],
        conflict=("a",),
        asked=set(),
    ),
    "a local edit the branch did not touch stays": Row(
        {"a": record(NEW)}, {"a": staged()}, [changed("a")], asked=set()
    ),
    "discard replaces a local edit, unmerged": Row(
        {"a": record(NEW)},
        {"a": staged()},
        [changed("a")],
        Local.DISCARD,
        standing={"a": Standing()},
        writes={"a": NEW},
    ),
    "discard over a folder turned into a link is refused": Row(
        {"d/a": record()},
        {"d/a": staged()},
        [changed("d/a", ChangeKind.DELETED)],
        Local.DISCARD,
        standing={"d/a": Standing(way="d")},
        conflict=("d/a",),
    ),
    "an unchanged file the branch removed goes while unchanged": Row(
        {"a": record(), "b": record()}, {"b": staged(OLD)}, deletes={"a": True}
    ),
    "a file deleted on both sides goes": Row(
        {"a": record()}, {}, [changed("a", ChangeKind.DELETED)], deletes={"a": False}
    ),
    "a local edit of a file the branch removed conflicts": Row(
        {"a": record()}, {}, [changed("a")], conflict=("a",)
    ),
    "discard lets a locally edited file the branch removed go": Row(
        {"a": record()}, {}, [changed("a")], Local.DISCARD, deletes={"a": False}
    ),
    "conflicts and obstacles are named together": Row(
        {"a": record()},
        {"a": staged(), "b": staged()},
        [changed("a")],
        standing={"b": Standing(here=frozenset({"b"}))},
        merges={"a": None},
        conflict=("a", "b"),
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_plan(row: Row) -> None:
    asked: set[str] = set()

    def standing(rel: str, sha: str, mode: FileMode) -> Standing:
        assert (sha, mode) == (row.snapshot[rel].sha, row.snapshot[rel].mode)
        asked.add(rel)
        return row.standing[rel]

    def merge(rel: str) -> bytes | None:
        asked.add(rel)
        return row.merges[rel]

    into = PendingUpdate("main", "c" * 40, ".meltano-forge/staging/update-x")
    changes = {c.path: c for c in row.changes}
    if row.conflict:
        with pytest.raises(PullConflict) as caught:
            plan_update(
                row.files, row.snapshot, changes, row.local, into, standing=standing, merge=merge
            )
        assert caught.value.paths == row.conflict
    else:
        plan = plan_update(
            row.files, row.snapshot, changes, row.local, into, standing=standing, merge=merge
        )
        assert plan.pending is into
        assert {rel: w.content_sha for rel, w in into.writes.items()} == row.writes
        assert all(w.record_sha == row.snapshot[rel].sha for rel, w in into.writes.items())
        assert {rel: r is not None for rel, r in into.deletes.items()} == row.deletes
        assert sorted(plan.update.written) == sorted(row.writes)
        assert sorted(plan.update.deleted) == sorted(row.deletes)
        assert plan.update.merged == row.merged
        assert sorted(plan.rewrites) == row.merged
        for rel in row.merged:
            assert into.writes[rel].staged_mtime_ns == 0, "a rewritten copy is not as staged"
    expected = set(row.standing) | set(row.merges) if row.asked is None else row.asked
    assert asked == expected, "the plan asks only what the decision needs"


def test_a_conflict_says_what_to_do() -> None:
    both = PullConflict(["meltano.yml"])
    assert str(both).endswith("or discard them (checkout --discard).")
    in_the_way = PullConflict([], ["a", "b"])
    assert "a, b already exist here but not in the workspace" in str(in_the_way)
