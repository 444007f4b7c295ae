"""With MELTANO_FORGE_GIT_METADATA, a person who has git finds a working repository in the
workspace: clean after a pull, the same diff as meltano-forge's, following commits, pulls
and checkouts, and their own `git commit && git push` is taken by the next pull. Git is
used here only to check what meltano-forge wrote (and as the person's own tool)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from client.git_mirror import rebuild
from providers.contract import CommitMeta, Person
from tests.client.conftest import Runner, seed_project
from tests.conftest import ForgeEnv


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize("env", ["local", "github", "gitlab"], indirect=True)
def test_native_git_sees_the_workspace_and_follows_it(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    run.base["MELTANO_FORGE_GIT_METADATA"] = "true"
    ws = tmp_path / "ws"
    pulled = run("pull", MELTANO_FORGE_PROJECT_DIR=str(ws))
    assert pulled.returncode == 0, pulled.stderr
    assert ".git folder was not updated" not in pulled.stderr, pulled.stderr
    head = env.head("development")
    assert git(ws, "status", "--porcelain") == ""
    assert git(ws, "log", "-1", "--format=%H").strip() == head
    assert git(ws, "rev-parse", "--abbrev-ref", "HEAD").strip() == "development"
    origin = git(ws, "remote", "get-url", "origin").strip()
    assert "TEST" not in origin
    assert origin == run.base["MELTANO_FORGE_REPO"].replace("file://", "file://")

    (ws / "meltano.yml").write_text((ws / "meltano.yml").read_text() + "# edited\n")
    (ws / "new.sql").write_text("select 1\n")
    ours = run("diff", MELTANO_FORGE_PROJECT_DIR=str(ws)).stdout
    git(ws, "add", "-N", "new.sql")
    theirs = git(ws, "diff")
    assert ours == theirs

    done = run("commit", "-m", "Edit", MELTANO_FORGE_PROJECT_DIR=str(ws))
    assert done.returncode == 0, done.stderr
    assert git(ws, "log", "-1", "--format=%H").strip() == env.head("development")
    assert git(ws, "status", "--porcelain") == ""

    env.forge.create_branch("feature", env.head("development") or "")
    switched = run("checkout", "feature", MELTANO_FORGE_PROJECT_DIR=str(ws))
    assert switched.returncode == 0, switched.stderr
    assert git(ws, "rev-parse", "--abbrev-ref", "HEAD").strip() == "feature"
    assert git(ws, "status", "--porcelain") == ""


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_a_persons_own_git_push_is_taken_by_the_next_pull(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    run.base["MELTANO_FORGE_GIT_METADATA"] = "true"
    ws = tmp_path / "ws"
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=str(ws)).returncode == 0
    (ws / "README.md").write_text("pushed with git\n")
    git(ws, "add", "README.md")
    identity = ["-c", "user.name=Ada", "-c", "user.email=ada@example.com"]
    subprocess.run(["git", "-C", str(ws), *identity, "commit", "-qm", "By hand"], check=True)
    subprocess.run(["git", "-C", str(ws), "push", "-q", "origin", "development"], check=True)
    pushed = git(ws, "rev-parse", "HEAD").strip()
    assert env.head("development") == pushed
    pulled = run("pull", MELTANO_FORGE_PROJECT_DIR=str(ws))
    assert pulled.returncode == 0, pulled.stderr
    assert "nothing to commit" in run("status", MELTANO_FORGE_PROJECT_DIR=str(ws)).stdout
    assert git(ws, "status", "--porcelain") == ""
    assert env.git("show", "development:README.md") == "pushed with git\n"


def test_commits_are_rebuilt_exactly_even_when_the_forge_drops_the_timezone() -> None:
    raw = (
        b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
        b"author Ada <ada@example.com> 1700000000 +0530\n"
        b"committer Bob <bob@example.com> 1700000100 -0700\n\nA message\n"
    )
    import hashlib

    sha = hashlib.sha1(b"commit %d\x00" % len(raw) + raw, usedforsecurity=False).hexdigest()
    meta = CommitMeta(
        sha,
        (),
        Person("Ada", "ada@example.com", 1700000000, None),
        Person("Bob", "bob@example.com", 1700000100, None),
        "A message",
    )
    assert rebuild(meta, "4b825dc642cb6eb9a060e54bf8d69288fbee4904") == raw
    wrong = CommitMeta(sha[::-1], (), meta.author, meta.committer, meta.message)
    assert rebuild(wrong, "4b825dc642cb6eb9a060e54bf8d69288fbee4904") is None
