"""Link chains checked against the kernel itself: whatever links a tree holds, in whatever
order, `check_links` passes only trees whose every link resolves inside the tree."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.errors import UnsafeInput
from providers.safety import check_links, resolve_link

NAMES = st.sampled_from(["a", "b", "l", "d"])
PART = st.one_of(NAMES, st.just(".."), st.just("."))


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[str], dict[str, str]]:
    """Some folders, and links (at paths inside them) whose targets mix names and `..`."""
    folders = draw(st.lists(st.lists(NAMES, min_size=1, max_size=3), max_size=4))
    dirs = sorted({"/".join(f) for f in folders})
    links: dict[str, str] = {}
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        where = draw(st.sampled_from(["", *dirs]))
        name = draw(st.sampled_from(["l", "x", "y", "esc"]))
        path = f"{where}/{name}" if where else name
        if any(path == d or d.startswith(path + "/") for d in dirs):
            continue
        if any(path.startswith(link + "/") for link in links):
            continue
        links[path] = "/".join(draw(st.lists(PART, min_size=1, max_size=5)))
    return dirs, {p: t for p, t in links.items() if not any(p.startswith(q + "/") for q in links)}


def kernel_escapes(dirs: list[str], links: dict[str, str]) -> bool:
    """Build the tree under a fresh root and ask the kernel where each link leads."""
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "outer" / "ws"
        workspace.mkdir(parents=True)
        for folder in dirs:
            (workspace / folder).mkdir(parents=True, exist_ok=True)
        for path, target in links.items():
            where = workspace / path
            if not where.parent.is_dir() or os.path.lexists(where):
                continue
            os.symlink(target, where)
        root = os.path.realpath(workspace)
        for path in links:
            try:
                resolved = os.path.realpath(workspace / path, strict=False)
            except OSError:  # a loop: refused either way
                continue
            if resolved != root and not resolved.startswith(root + os.sep):
                return True
    return False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_links_that_pass_never_leave_the_tree(tree: tuple[list[str], dict[str, str]]) -> None:
    dirs, links = tree
    try:
        check_links(links)
    except UnsafeInput:
        return
    assert not kernel_escapes(dirs, links), links


@settings(max_examples=200, deadline=None)
@given(st.permutations(["d/l", "d/e/esc", "d/e/x"]))
def test_the_order_links_come_in_does_not_matter(order: list[str]) -> None:
    targets = {"d/l": "..", "d/e/esc": "../l/..", "d/e/x": "../l"}
    with pytest.raises(UnsafeInput, match="d/e/esc"):
        check_links({path: targets[path] for path in order})


def test_the_reported_escape_and_its_harmless_neighbours() -> None:
    assert resolve_link("d/l", {"d/l": ".."}) == ""
    assert resolve_link("d/e/x", {"d/l": "..", "d/e/x": "../l"}) == ""
    with pytest.raises(UnsafeInput, match="points outside"):
        check_links({"d/l": "..", "d/e/esc": "../l/.."})
    with pytest.raises(UnsafeInput, match="loops"):
        check_links({"a": "b", "b": "a"})
    with pytest.raises(UnsafeInput):
        check_links({"abs": "/etc/passwd"})
