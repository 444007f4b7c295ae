"""More runner stories: two runners at once, monorepos, the install cache and `init`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.client.conftest import FIXTURES, PLUGIN, Runner, seed_project
from tests.conftest import ForgeEnv


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out + err


@pytest.mark.slow
def test_two_runners_disjoint_and_mergeable_edits_are_both_kept(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    a = run.start("run", "--", "sh", "-c", "sleep 2; meltano environment add ci")
    b = run.start("run", "--", "sh", "-c", "sleep 2; meltano config set example a_string hello")
    c = run.start(
        "run", "--", "sh", "-c", "sleep 2; mkdir -p transform && echo 'select 1' > transform/m.sql"
    )
    results = [finish(p) for p in (a, b, c)]
    assert [code for code, _ in results] == [0, 0, 0], results
    meltano_yml = env.git("show", "development:meltano.yml")
    assert "- name: ci" in meltano_yml
    assert "a_string: hello" in meltano_yml
    assert env.git("show", "development:transform/m.sql") == "select 1\n"
    assert env.git("rev-list", "--count", f"{base}..development").strip() == "3"
    assert env.git("rev-list", "--count", "--merges", "development").strip() == "0"


@pytest.mark.slow
def test_two_runners_conflicting_edits_keep_one_and_save_the_other(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    a = run.start("run", "--", "sh", "-c", "sleep 2; meltano environment add alpha")
    b = run.start("run", "--", "sh", "-c", "sleep 2; meltano environment add beta")
    (code_a, out_a), (code_b, out_b) = finish(a), finish(b)
    assert sorted([code_a, code_b]) == [0, 3], (out_a, out_b)
    loser = out_a if code_a == 3 else out_b
    assert "meltano-forge promote --source development-conflict-" in loser
    side = [
        line.strip().lstrip("* ")
        for line in env.git("branch", "--list", "development-conflict-*").splitlines()
    ]
    assert len(side) == 1
    kept = env.git("show", "development:meltano.yml")
    saved = env.git("show", f"{side[0]}:meltano.yml")
    assert {("- name: alpha" in kept), ("- name: beta" in kept)} == {True, False}
    lost_env = "beta" if "- name: alpha" in kept else "alpha"
    assert f"- name: {lost_env}" in saved, "the losing change is on the side branch"
    assert env.git("rev-parse", f"{side[0]}~1").strip() == base


@pytest.mark.slow
def test_monorepo_project_path_round_trips(env: ForgeEnv, tmp_path: Path, no_git: Path) -> None:
    meltano_yml = (FIXTURES / "meltano-config" / "meltano.yml").read_bytes() + PLUGIN.encode()
    base = env.seed(
        {
            "data/warehouse/meltano.yml": meltano_yml,
            "app/main.py": b"print('hi')\n",
            "README.md": b"monorepo\n",
        }
    )
    env.forge.create_branch("development", base)
    run = Runner(env, tmp_path, no_git)
    ws = tmp_path / "mono"
    result = run(
        "run",
        "--",
        "meltano",
        "config",
        "set",
        "example",
        "a_string",
        "mono",
        MELTANO_FORGE_PROJECT_DIR=str(ws),
        MELTANO_FORGE_PROJECT_PATH="data/warehouse",
    )
    assert result.returncode == 0, result.stderr
    assert (ws / "meltano.yml").exists()
    assert not (ws / "app").exists()
    assert env.git(
        "diff-tree", "-r", "--no-commit-id", "--name-only", base, "development"
    ).split() == ["data/warehouse/meltano.yml"]
    assert "a_string: mono" in env.git("show", "development:data/warehouse/meltano.yml")


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_install_runs_only_when_the_plugin_set_changes(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    stub_dir = tmp_path / "stub-bin"
    stub_dir.mkdir()
    calls = tmp_path / "calls.log"
    stub = stub_dir / "meltano"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 0\n')
    stub.chmod(0o755)
    base = env.seed(
        {"meltano.yml": b"version: 1\n", "plugins/extractors/tap-x--acme.lock": b"{}\n"}
    )
    env.forge.create_branch("development", base)
    run = Runner(env, tmp_path, no_git)
    run.base["PATH"] = f"{no_git}:{stub_dir}:/usr/bin:/bin"
    ws = str(tmp_path / "ws")
    for _ in range(2):
        result = run(
            "run",
            "--",
            "meltano",
            "run",
            "tap-x",
            "target-y",
            MELTANO_FORGE_PROJECT_DIR=ws,
            MELTANO_FORGE_INSTALL="auto",
        )
        assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == ["install", "run tap-x target-y", "run tap-x target-y"]
    env.seed(
        {"plugins/extractors/tap-x--acme.lock": b'{"v": 2}\n'}, branch="development", parent=base
    )
    result = run(
        "run",
        "--",
        "meltano",
        "run",
        "tap-x",
        "target-y",
        MELTANO_FORGE_PROJECT_DIR=ws,
        MELTANO_FORGE_INSTALL="auto",
    )
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines()[-2:] == ["install", "run tap-x target-y"], (
        "a new lock file means a new install"
    )


@pytest.mark.slow
def test_init_on_an_empty_repository(env: ForgeEnv, tmp_path: Path, no_git: Path) -> None:
    run = Runner(env, tmp_path, no_git)
    result = run("--json", "init", "--project-name", "warehouse")
    assert result.returncode == 0, result.stderr
    names = set(env.git("ls-tree", "-r", "--name-only", "main").split())
    assert {"meltano.yml", ".gitignore", "requirements.txt"} <= names
    assert not any(n.startswith(".meltano/") for n in names)
    assert env.head("development") == env.head("main")
    report = json.loads(result.stdout)
    workspace = Path(report["workspace"])
    assert (workspace / "meltano.yml").exists(), "init leaves a workspace behind"
    status = run("status", MELTANO_FORGE_PROJECT_DIR=str(workspace))
    assert status.returncode == 0, status.stderr
    assert "On development" in status.stdout
    assert "nothing to commit" in status.stdout
    again = run("init")
    assert again.returncode == 2
    assert "already has commits" in again.stderr
    assert "use `pull` instead" in again.stderr
