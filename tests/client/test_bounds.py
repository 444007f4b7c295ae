"""Bounded resources in the CLI (issue 16, section 4), over the real `meltano-forge`: a
`meltano.yml` that is an alias bomb or nests thousands deep is one warning line, never a
RecursionError or an expansion; a tree holding a name or a path that no filesystem can
hold is refused as unsafe input (exit 7) naming the path, and nothing is published."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.client.conftest import Runner
from tests.conftest import Files, ForgeEnv

LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)


def alias_bomb(levels: int = 9) -> bytes:
    """The classic "billion laughs", used where the client reads patterns: an install key
    that turned each into a string would build gigabytes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnop"[:levels]
    for previous, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    lines.append(f"include_paths: *{names[-1]}")
    return ("\n".join(lines) + "\n").encode()


NESTED = b"[" * 5000 + b"]" * 5000 + b"\n"


@LOCAL
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (alias_bomb(6), "its aliases expand to more than 200,000 values"),
        (NESTED, "line 1: it nests deeper than 64 levels"),
    ],
    ids=["alias-bomb", "nested"],
)
def test_a_hostile_meltano_yml_is_one_warning_and_the_run_goes_on(
    env: ForgeEnv, tmp_path: Path, no_git: Path, content: bytes, reason: str
) -> None:
    env.seed({"meltano.yml": content}, branch="development")
    runner = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    pulled = runner("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert pulled.returncode == 0, pulled.stderr
    assert (folder / "meltano.yml").read_bytes() == content
    for install in ("never", "auto"):
        ran = runner(
            "run",
            "--",
            "true",
            MELTANO_FORGE_PROJECT_DIR=str(folder),
            MELTANO_FORGE_INSTALL=install,
            MELTANO_FORGE_MELTANO_BIN="true",
        )
        assert ran.returncode == 0, ran.stderr
        assert "unexpected error" not in ran.stderr
        assert "RecursionError" not in ran.stderr
        warnings = [line for line in ran.stderr.splitlines() if "finds no plugins" in line]
        assert len(warnings) == 1, ran.stderr
        assert warnings[0].startswith("meltano-forge: warning: meltano.yml line ")
        assert reason in warnings[0]


@LOCAL
@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("a" * 300, "a name in it is longer than 255 bytes"),
        ("/".join(["d"] * 100) + "/f.sql", "it is more than 64 levels deep"),
        ("/".join(["n" * 200] * 6), "it is longer than 1,024 bytes"),
    ],
    ids=["300-byte-name", "100-levels", "1200-byte-path"],
)
def test_a_path_no_filesystem_can_hold_is_refused_and_nothing_is_published(
    env: ForgeEnv, tmp_path: Path, no_git: Path, path: str, problem: str
) -> None:
    base = env.seed({"meltano.yml": b"version: 1\n", "a.sql": b"select 1\n"}, branch="development")
    runner = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    first = runner("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert first.returncode == 0, first.stderr
    env.seed({"a.sql": b"select 2\n", path: b"x"}, branch="development", parent=base)

    refused = runner("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert refused.returncode == 7, refused.stderr
    assert f"Refusing the path '{path}': {problem}" in refused.stderr
    assert "unexpected error" not in refused.stderr
    assert (folder / "a.sql").read_bytes() == b"select 1\n", "nothing was published"
    assert sorted(p.name for p in folder.iterdir()) == [".meltano-forge", "a.sql", "meltano.yml"]

    fresh = tmp_path / "fresh"
    again = runner("pull", MELTANO_FORGE_PROJECT_DIR=str(fresh))
    assert again.returncode == 7, again.stderr
    assert not fresh.exists() or not [p for p in fresh.iterdir() if p.name != ".meltano-forge"]


@LOCAL
def test_a_local_path_deeper_than_the_limit_is_never_committed(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = env.seed({"meltano.yml": b"version: 1\n"}, branch="development")
    runner = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    assert runner("pull", MELTANO_FORGE_PROJECT_DIR=str(folder)).returncode == 0
    deep = "/".join(["d"] * 70) + "/f.sql"
    (folder / deep).parent.mkdir(parents=True)
    (folder / deep).write_text("select 1\n")
    status = runner("status", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert status.returncode == 0, status.stderr
    committed = runner("commit", "-m", "deep", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert committed.returncode == 7, committed.stdout + committed.stderr
    assert f"Refusing the path '{deep}': it is more than 64 levels deep" in committed.stderr
    assert env.head("development") == base


@LOCAL
def test_include_paths_of_many_recursions_walk_the_tree_once(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """`**/**/.../*.yml` names the same files as `**/*.yml`; walked once per `**`, twelve
    files took 30 s and 646,646 entries with ten of them, and fourteen never finished."""
    files: Files = {"meltano.yml": b"include_paths: ['" + b"**/" * 14 + b"*.yml']\n"}
    files |= {"/".join(["d"] * i) + f"/f{i}.yml": b"plugins: {}\n" for i in range(1, 13)}
    env.seed(files, branch="development")
    started = Runner(env, tmp_path, no_git).start(
        "run",
        "--",
        "true",
        MELTANO_FORGE_PROJECT_DIR=str(tmp_path / "ws"),
        MELTANO_FORGE_INSTALL="auto",
        MELTANO_FORGE_MELTANO_BIN="true",
    )
    try:
        _, stderr = started.communicate(timeout=120)
    finally:
        started.kill()
        started.communicate()
    assert started.returncode == 0, stderr
    assert "installing plugins" in stderr
