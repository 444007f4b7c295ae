"""Change-set rules every adapter shares: validation, and the rebase-or-conflict decision.

(Where a missing branch starts is `ForgeBase._start_of`, beside the commit it serves.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from providers.contract import FileChange, FileMode, Forge
from providers.errors import Conflict, InvalidRequest, UnsafeInput
from providers.safety import Limits, check_links, check_path, check_size


def validate(changes: Sequence[FileChange], limits: Limits | None = None) -> None:
    """Refuse what a pull would refuse (`providers.safety`: paths, sizes, links that leave
    the tree through the change set's own links), an empty change set, or one path twice.
    A commit that passes can always be pulled again."""
    if not changes:
        msg = "The change set is empty"
        raise InvalidRequest(msg, "Change at least one file before committing")
    limits = limits or Limits()
    seen: set[str] = set()
    total = 0
    links: dict[str, str] = {}
    for change in changes:
        check_path(change.path)
        if change.path in seen:
            msg = f"{change.path} appears twice in the change set"
            raise InvalidRequest(msg)
        seen.add(change.path)
        if change.content is None:
            continue
        check_size(change.path, len(change.content), limits)
        total += len(change.content)
        if change.mode is FileMode.SYMLINK:
            links[change.path] = change.content.decode("utf-8", "surrogateescape")
    if total > limits.max_total_bytes:
        msg = f"The change set holds more than {limits.max_total_bytes:,} bytes"
        raise UnsafeInput(msg, "Commit large data elsewhere (object storage, a package index)")
    check_links(links)


def links_after(forge: Forge, base: str | None, changes: Sequence[FileChange]) -> dict[str, str]:
    """Every symlink of the tree `changes` make on `base`: the base's own links (their
    targets read from the forge) with the change set applied."""
    links: dict[str, str] = {}
    if base is not None:
        for entry in forge.list_tree(base):
            if entry.mode is FileMode.SYMLINK:
                links[entry.path] = forge.read_file(base, entry.path).decode(
                    "utf-8", "surrogateescape"
                )
    for change in changes:
        links.pop(change.path, None)
        if change.content is not None and change.mode is FileMode.SYMLINK:
            links[change.path] = change.content.decode("utf-8", "surrogateescape")
    return links


def paths(changes: Sequence[FileChange]) -> frozenset[str]:
    """The paths a change set touches."""
    return frozenset(change.path for change in changes)


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
