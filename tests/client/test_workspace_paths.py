"""A symlink or a file on a path's way: the workspace gives one answer wherever it asks.

The question "does anything but a real folder stand on this path's way" used to be written
four times (status, links after a commit, files in the way of a pull, the rename into
place), and the copies disagreed: a workspace that had already written a folder trusted it
for its whole life, a folder holding only an untracked link or an empty folder counted as
empty, and a discard over a folder turned into a file failed half-way through publishing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from client.manifest import Manifest
from client.workspace import Local, PullConflict, Workspace
from providers.errors import UnsafeInput
from tests.conftest import Files, ForgeEnv

LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)


def materialized(env: ForgeEnv, root: Path, files: Files) -> tuple[Workspace, str]:
    base = env.seed(files)
    ws = Workspace.open(root, env.forge)
    ws.update("main", base, repo="repo")
    return ws, base


def nothing_pending(root: Path, base: str) -> None:
    manifest = Manifest.load(root)
    assert manifest is not None
    assert manifest.pending is None, "the refusal came before anything was recorded"
    assert manifest.base_sha == base


@LOCAL
def test_a_workspace_that_wrote_a_folder_never_writes_through_the_link_that_replaced_it(
    env: ForgeEnv, tmp_path: Path
) -> None:
    root, outside = tmp_path / "ws", tmp_path / "outside"
    outside.mkdir()
    ws, _ = materialized(env, root, {"sub/a.txt": b"1\n", "top.txt": b"t\n"})
    shutil.rmtree(root / "sub")
    (root / "sub").symlink_to(outside)  # e.g. by the command a runner ran
    with pytest.raises(UnsafeInput, match="symlink"):
        ws.restore(["sub/a.txt"])
    assert list(outside.iterdir()) == [], "nothing was written outside the project"


@LOCAL
@pytest.mark.parametrize("stand_in", ["symlink", "file"])
def test_discard_over_a_folder_replaced_by_a_link_or_a_file_is_refused_before_anything_moves(
    env: ForgeEnv, tmp_path: Path, stand_in: str
) -> None:
    root, outside = tmp_path / "ws", tmp_path / "outside"
    outside.mkdir()
    ws, base = materialized(env, root, {"sub/a.txt": b"1\n", "top.txt": b"t\n"})
    head = env.seed({"sub/a.txt": b"2\n", "top.txt": b"t\n"}, parent=base)
    shutil.rmtree(root / "sub")
    if stand_in == "symlink":
        (root / "sub").symlink_to(outside)
    else:
        (root / "sub").write_text("not a folder\n")
    with pytest.raises(PullConflict, match="Move them out of the way"):
        ws.update("main", head, local=Local.DISCARD)
    assert list(outside.iterdir()) == []
    nothing_pending(root, base)
    assert Workspace.open(root, env.forge).manifest.base_sha == base


@LOCAL
@pytest.mark.parametrize("left", ["a link to a folder", "an empty folder"])
def test_a_folder_that_still_holds_an_untracked_link_or_folder_is_in_the_way_of_a_file(
    env: ForgeEnv, tmp_path: Path, left: str
) -> None:
    root, elsewhere = tmp_path / "ws", tmp_path / "elsewhere"
    elsewhere.mkdir()
    ws, base = materialized(env, root, {"a/x.txt": b"x\n", "top.txt": b"t\n"})
    head = env.remove(["a/x.txt"], "main", base)
    head = env.seed({"a": b"now a file\n", "top.txt": b"t\n"}, parent=head)
    if left == "a link to a folder":
        (root / "a" / "link").symlink_to(elsewhere)
    else:
        (root / "a" / "empty").mkdir()
    with pytest.raises(PullConflict, match="already exists here"):
        ws.update("main", head)
    assert (root / "a" / "x.txt").read_bytes() == b"x\n"
    nothing_pending(root, base)
