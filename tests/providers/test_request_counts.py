"""API requests per operation, counted in the doubles' request logs (never timed)."""

from __future__ import annotations

import pytest

from providers.contract import FileChange, FileMode
from tests.conftest import ForgeEnv

HUNDRED = {f"transform/models/m{i:03d}.sql": f"select {i}\n".encode() for i in range(100)}


@pytest.mark.parametrize(("env", "budget"), [("github", 2), ("gitlab", 2)], indirect=["env"])
def test_materialize_costs_at_most_two_requests(env: ForgeEnv, budget: int) -> None:
    sha = env.seed({**HUNDRED, "meltano.yml": b"version: 1\n"})
    forge = env.new_forge()
    env.clear_log()
    with forge.archive("main") as snapshot:
        entries = list(snapshot.entries)
    assert snapshot.sha == sha, "the branch name was pinned to a SHA by the archive itself"
    assert len(entries) == 101
    assert env.requests() <= budget
    if env.kind == "github":
        assert env.requests("GET", r"/tarball/main$") == 1
        assert env.requests("GET", r"^/_codeload/") == 1


@pytest.mark.parametrize(
    ("env", "budget"), [("github", 4), ("github-graphql", 1), ("gitlab", 2)], indirect=["env"]
)
def test_commit_of_100_text_files_is_cheap(env: ForgeEnv, budget: int) -> None:
    base = env.seed({"meltano.yml": b"version: 1\n"})
    forge = env.new_forge()
    env.clear_log()
    changes = [FileChange.put(p, c) for p, c in HUNDRED.items()]
    changes.append(FileChange.put("meltano.yml", b"version: 2\n", base_mode=FileMode.REGULAR))
    result = forge.commit("main", base, changes, "add 100 models")
    assert env.head() == result.sha
    assert env.requests() <= budget
    if env.kind == "github-graphql":
        assert env.requests("POST", r"^/api/graphql$") == 1
        assert env.requests("POST", r"/git/") == 0
    if env.kind == "github":
        assert env.requests("POST", r"/git/blobs$") == 0, "text travels inline in the tree"
    assert env.git("rev-list", "--count", f"{base}..main").strip() == "1"


@pytest.mark.parametrize("env", ["github", "github-graphql"], indirect=True)
def test_binary_and_mode_changes_use_blobs_and_rest(env: ForgeEnv) -> None:
    base = env.seed({"run.sh": b"#!/bin/sh\n"})
    forge = env.new_forge()
    env.clear_log()
    forge.commit(
        "main",
        base,
        [
            FileChange.put("logo.png", b"\x89PNG\r\n\x1a\n\x00\x00"),
            FileChange.put("run.sh", b"#!/bin/sh\n", FileMode.EXECUTABLE, FileMode.REGULAR),
        ],
        "binary and chmod",
    )
    assert env.requests("POST", r"/git/blobs$") == 1
    assert env.requests("POST", r"^/api/graphql$") == 0, "GraphQL cannot carry modes"
    assert "100755" in env.git("ls-tree", "main", "run.sh")
    assert env.git_bytes("cat-file", "blob", "main:logo.png") == b"\x89PNG\r\n\x1a\n\x00\x00"
