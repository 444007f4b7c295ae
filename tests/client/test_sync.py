"""Pull with local edits: keep them, merge three ways, or refuse naming the files."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.manifest import Manifest
from client.workspace import PullConflict, Workspace
from providers.contract import FileMode
from tests.conftest import ForgeEnv

BASE = b"a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\n"


@pytest.mark.parametrize("env", ["local", "github"], indirect=True)
def test_pull_merges_and_keeps_local_edits(env: ForgeEnv, tmp_path: Path) -> None:
    base = env.seed({"meltano.yml": BASE, "other.txt": b"x\n"})
    root = tmp_path / "ws"
    ws = Workspace.open(root, env.forge)
    ws.update("main", base, repo="repo")
    (root / "meltano.yml").write_bytes(BASE.replace(b"a: 1", b"a: local"))
    (root / "mine.txt").write_text("untracked and kept\n")
    head = env.seed(
        {"meltano.yml": BASE.replace(b"f: 6", b"f: upstream"), "other.txt": b"y\n"}, parent=base
    )
    updated = ws.update("main", head)
    assert sorted(updated.written) == ["meltano.yml", "other.txt"]
    assert updated.merged == ["meltano.yml"]
    assert (root / "meltano.yml").read_bytes() == BASE.replace(b"a: 1", b"a: local").replace(
        b"f: 6", b"f: upstream"
    )
    assert (root / "other.txt").read_text() == "y\n"
    assert (root / "mine.txt").exists()
    reloaded = Manifest.load(root)
    assert reloaded is not None
    assert reloaded.base_sha == head
    again = Workspace.open(root, env.forge)
    assert [c.path for c in again.status().changes] == ["meltano.yml", "mine.txt"]


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_pull_refuses_conflicting_edits_and_changes_nothing(env: ForgeEnv, tmp_path: Path) -> None:
    base = env.seed({"meltano.yml": BASE, "other.txt": b"x\n"})
    root = tmp_path / "ws"
    ws = Workspace.open(root, env.forge)
    ws.update("main", base, repo="repo")
    mine = BASE.replace(b"c: 3", b"c: mine")
    (root / "meltano.yml").write_bytes(mine)
    env.seed({"meltano.yml": BASE.replace(b"c: 3", b"c: theirs"), "other.txt": b"y\n"}, parent=base)
    head = env.head()
    assert head is not None
    with pytest.raises(PullConflict) as caught:
        ws.update("main", head)
    assert caught.value.paths == ("meltano.yml",)
    assert (root / "meltano.yml").read_bytes() == mine
    assert (root / "other.txt").read_text() == "x\n"
    assert Manifest.load(root).base_sha == base  # type: ignore[union-attr]


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_status_ignores_meltano_rewrites_and_follows_gitignore(
    env: ForgeEnv, tmp_path: Path
) -> None:
    base = env.seed(
        {
            "meltano.yml": BASE,
            "run.sh": (b"#!/bin/sh\n", FileMode.EXECUTABLE),
            ".gitignore": b"*.log\n!keep.log\n/output/\n",
            "sub/.gitignore": b"local-only/\n",
        }
    )
    root = tmp_path / "ws"
    ws = Workspace.open(root, env.forge)
    ws.update("main", base, repo="repo")
    (root / "meltano.yml").chmod(0o600)
    (root / "meltano.yml").write_bytes(BASE)  # Meltano rewrites identical content with 0600
    for name in (
        "debug.log",
        "keep.log",
        "output/x.csv",
        "sub/local-only/y",
        "sub/kept.txt",
        ".meltano/meltano.db",
        "transform/output/z.sql",
    ):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    (root / "run.sh").chmod(0o644)
    status = ws.status()
    assert [(c.path, c.kind) for c in status.changes] == [
        ("keep.log", "added"),
        ("run.sh", "modified"),
        ("sub/kept.txt", "added"),
        ("transform/output/z.sql", "added"),
    ]
    assert status.changes[1].mode is FileMode.REGULAR
    assert status.hashed == 2, (
        "only the rewritten and the chmodded file were hashed (stat fast path)"
    )
