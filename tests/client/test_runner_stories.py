"""More runner stories: two runners at once, monorepos, the install cache and `init`."""

from __future__ import annotations

import json
import subprocess
import sys
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


STUB_MELTANO = """#!{python}
import hashlib, json, pathlib, shlex, sys
with open({calls!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1] == "install":  # what Meltano leaves behind: a venv and its fingerprint
    lock = json.loads(pathlib.Path("plugins/extractors/tap-x--acme.lock").read_text())
    venv = pathlib.Path(".meltano/extractors/tap-x/venv")
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "bin" / "python").touch()
    args = " ".join(sorted(set(shlex.split(lock["pip_url"]))))
    (venv / ".meltano_plugin_fingerprint").write_text(hashlib.sha256(args.encode()).hexdigest())
"""


def _lock(pip_url: str, **more: object) -> bytes:
    lock = {"plugin_type": "extractors", "name": "tap-x", "pip_url": pip_url, **more}
    return json.dumps(lock).encode()


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_install_runs_only_when_the_plugin_set_changes(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """Per plugin: a plugin is installed (by name) when its environment is missing or its
    `pip_url` changed, here through its lock file; a lock edit that keeps the `pip_url`
    installs nothing."""
    stub_dir = tmp_path / "stub-bin"
    stub_dir.mkdir()
    calls = tmp_path / "calls.log"
    stub = stub_dir / "meltano"
    stub.write_text(STUB_MELTANO.format(python=sys.executable, calls=str(calls)))
    stub.chmod(0o755)
    base = env.seed(
        {
            "meltano.yml": b"version: 1\nplugins:\n  extractors:\n"
            b"  - name: tap-x\n    variant: acme\n",
            "plugins/extractors/tap-x--acme.lock": _lock("tap-x==1"),
        }
    )
    env.forge.create_branch("development", base)
    run = Runner(env, tmp_path, no_git)
    run.base["PATH"] = f"{no_git}:{stub_dir}:/usr/bin:/bin"
    ws = str(tmp_path / "ws")

    def once() -> None:
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

    for _ in range(2):
        once()
    assert calls.read_text().splitlines() == [
        "install tap-x",
        "run tap-x target-y",
        "run tap-x target-y",
    ]
    head = env.seed(
        {"plugins/extractors/tap-x--acme.lock": _lock("tap-x==1", settings=[{"name": "a"}])},
        branch="development",
        parent=base,
    )
    once()
    assert calls.read_text().splitlines()[-1:] == ["run tap-x target-y"], (
        "a lock edit that keeps the pip_url installs nothing"
    )
    env.seed(
        {"plugins/extractors/tap-x--acme.lock": _lock("tap-x==2")},
        branch="development",
        parent=head,
    )
    once()
    assert calls.read_text().splitlines()[-2:] == ["install tap-x", "run tap-x target-y"], (
        "a new pip_url in the lock file means a new install"
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
