"""Change-set rules every adapter shares: validation, and the rebase-or-conflict decision."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from providers.contract import FileChange, Forge
from providers.errors import Conflict, InvalidRequest
from providers.names import check_repo_path


def validate(changes: Sequence[FileChange]) -> None:
    """Refuse an empty change set, unsafe paths, or one path changed twice."""
    if not changes:
        msg = "The change set is empty"
        raise InvalidRequest(msg, "Change at least one file before committing")
    seen: set[str] = set()
    for change in changes:
        check_repo_path(change.path)
        if change.path in seen:
            msg = f"{change.path} appears twice in the change set"
            raise InvalidRequest(msg)
        seen.add(change.path)


def paths(changes: Sequence[FileChange]) -> frozenset[str]:
    """The paths a change set touches."""
    return frozenset(change.path for change in changes)


def changed_since(forge: Forge, base_sha: str | None, head_sha: str) -> frozenset[str]:
    """Paths changed from `base_sha` to `head_sha`; with no base, every path at the head."""
    if base_sha is None:
        return frozenset(e.path for e in forge.list_tree(head_sha))
    return forge.changed_paths(base_sha, head_sha)


def rebase_or_conflict(
    changes: Sequence[FileChange],
    expected_head: str | None,
    current_head: str,
    changed_between: Callable[[str | None, str], frozenset[str]],
) -> None:
    """Decide whether a change set based on `expected_head` may land on `current_head`.

    Returns when none of its paths changed in between (the commit is rebased); raises
    `Conflict` naming the overlapping paths otherwise."""
    overlap = paths(changes) & changed_between(expected_head, current_head)
    if overlap:
        raise Conflict(overlap)
