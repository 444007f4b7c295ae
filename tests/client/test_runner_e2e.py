"""The runner end to end: real `meltano`, each forge, and no git anywhere on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TOKEN, ForgeEnv

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "meltano"
PLUGIN = """plugins:
  utilities:
  - name: example
    namespace: example
    settings:
    - name: a_string
    - name: an_integer
      kind: integer
    - name: a_number
      kind: decimal
    - name: an_object
      kind: object
    - name: an_array
      kind: array
"""
STEPS = [
    ["example", "a_string", "--", "-86.75"],
    ["example", "an_integer", "42"],
    ["example", "a_number", "3.1415"],
    ["example", "an_object", '{"foo": "bar"}'],
    ["example", "an_array", '["foo", "bar"]'],
]


@pytest.fixture
def no_git(tmp_path: Path) -> Iterator[Path]:
    """A `git` first on PATH that records any call; the test fails if it was called."""
    folder = tmp_path / "no-git-bin"
    folder.mkdir()
    marker = tmp_path / "git-was-called"
    script = folder / "git"
    script.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 97\n')
    script.chmod(0o755)
    yield folder
    assert not marker.exists(), f"git was called: {marker.read_text()}"


def meltano_dir() -> Path:
    found = shutil.which("meltano") or str(ROOT / ".venv-meltano" / "bin" / "meltano")
    assert Path(found).exists(), "meltano is not installed: run `make install`"
    return Path(found).parent


class Runner:
    """Runs `meltano-forge` as a container would, against one ForgeEnv."""

    def __init__(self, env: ForgeEnv, tmp_path: Path, no_git: Path) -> None:
        self.env, self.tmp_path = env, tmp_path
        location = env.make_config().location
        self.base = {
            "PATH": f"{no_git}:{meltano_dir()}:{os.environ.get('PATH', '')}",
            "HOME": str(tmp_path),
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
            "MELTANO_FORGE_INSTALL": "never",
            "MELTANO_FORGE_REPO": location.web_url
            if env.kind != "local"
            else f"file://{env.repo_dir}",
            "MELTANO_FORGE_PROVIDER": env.kind.split("-")[0],
            "MELTANO_FORGE_API_URL": location.api_url if env.kind != "local" else "",
            "MELTANO_FORGE_TOKEN": TOKEN,
        }
        self.count = 0

    def __call__(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        self.count += 1
        env = {
            **self.base,
            "MELTANO_FORGE_PROJECT_DIR": str(self.tmp_path / f"ws{self.count}"),
            **extra,
        }
        env = {k: v for k, v in env.items() if v}
        return subprocess.run(
            [sys.executable, "-c", "from service.entry import main; main()", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )


def seed_project(env: ForgeEnv) -> str:
    meltano_yml = (FIXTURES / "meltano-config" / "meltano.yml").read_bytes() + PLUGIN.encode()
    base = env.seed({"meltano.yml": meltano_yml, ".gitignore": b"/.meltano\n.env\n/venv\n"})
    env.forge.create_branch("development", base)
    return base


@pytest.mark.slow
def test_meltano_config_steps_commit_once_each(env: ForgeEnv, tmp_path: Path, no_git: Path) -> None:
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    for step in STEPS:
        result = run("run", "--", "meltano", "config", "set", *step)
        assert result.returncode == 0, result.stderr
        assert "auto-committed meltano.yml" in result.stdout
    noop = run("run", "--", "meltano", "config", "set", "example", "an_integer", "42")
    assert noop.returncode == 0, noop.stderr
    assert "auto-committed" not in noop.stdout
    assert env.git("rev-list", "--count", f"{base}..development").strip() == str(len(STEPS))
    expected = (FIXTURES / "meltano-config" / "ending-meltano.yml").read_bytes()
    assert env.git_bytes("show", "development:meltano.yml") == expected
    assert "100644" in env.git("ls-tree", "development", "meltano.yml"), (
        "Meltano's 0600 is not a mode change"
    )
    assert env.head("main") == base
    log = env.git("log", "-1", "--format=%B", "development")
    assert log.startswith("meltano config set example an_array")
    assert "Meltano-Forge-Run: " in log


@pytest.mark.slow
def test_read_only_main_refuses_and_changes_nothing(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    result = run("run", "--", "meltano", "environment", "add", "x", MELTANO_FORGE_BRANCH="main")
    assert result.returncode == 1
    assert "deployed as read-only" in result.stderr + result.stdout
    assert env.head("main") == base


@pytest.mark.slow
@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_missing_development_is_created_and_personal_branches(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    meltano_yml = (FIXTURES / "meltano-config" / "meltano.yml").read_bytes()
    base = env.seed({"meltano.yml": meltano_yml})
    run = Runner(env, tmp_path, no_git)
    result = run("run", "--", "meltano", "environment", "add", "ci")
    assert result.returncode == 0, result.stderr
    assert env.git("rev-parse", "development~1").strip() == base
    mine = run("run", "--", "meltano", "environment", "add", "mine", MELTANO_FORGE_USER="aj")
    assert mine.returncode == 0, mine.stderr
    assert env.git("rev-parse", "development-aj~1").strip() == env.head("development")
    clash = run(
        "run",
        "--",
        "meltano",
        "environment",
        "list",
        MELTANO_FORGE_USER="aj",
        MELTANO_FORGE_PERSONAL_BRANCH_TEMPLATE="{working}/{user}",
    )
    assert clash.returncode == 2
    assert "folder" in clash.stderr


@pytest.mark.slow
@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_failed_command_changes_go_to_a_rescue_branch(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    result = run("run", "--", "sh", "-c", "echo '# wip' >> meltano.yml; exit 3")
    assert result.returncode == 3
    rescue = [
        line.split()[-1]
        for line in env.git("branch", "--list", "development-rescue-*").splitlines()
    ]
    assert len(rescue) == 1
    assert env.git("show", f"{rescue[0]}:meltano.yml").endswith("# wip\n")
    assert env.head("development") == base


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_workspace_commands(env: ForgeEnv, tmp_path: Path, no_git: Path) -> None:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    ws = str(tmp_path / "workstation")
    pulled = run("--json", "pull", MELTANO_FORGE_PROJECT_DIR=ws)
    assert pulled.returncode == 0, pulled.stderr
    (Path(ws) / "meltano.yml").write_text((Path(ws) / "meltano.yml").read_text() + "# note\n")
    (Path(ws) / ".env").write_text("TAP_SECRET=x\n")  # ignored by the project's .gitignore
    (Path(ws) / "extract").mkdir()
    (Path(ws) / "extract" / "service.json").write_text("-----BEGIN PRIVATE KEY-----\nabc\n")
    status = run("status", MELTANO_FORGE_PROJECT_DIR=ws)
    assert "modified  meltano.yml" in status.stdout
    blocked = run("checkout", "main", MELTANO_FORGE_PROJECT_DIR=ws)
    assert blocked.returncode == 2
    assert "--discard or --carry" in blocked.stderr
    done = run("commit", "-m", "Add a note", MELTANO_FORGE_PROJECT_DIR=ws)
    assert done.returncode == 0, done.stderr
    assert "held back extract/service.json" in done.stdout
    assert env.git("show", "development:meltano.yml").endswith("# note\n")
    tracked = env.git("ls-tree", "-r", "--name-only", "development").split()
    assert ".env" not in tracked
    assert "extract/service.json" not in tracked
    switched = run("checkout", "main", "--carry", MELTANO_FORGE_PROJECT_DIR=ws)
    assert switched.returncode == 0, switched.stderr
    assert (Path(ws) / "extract" / "service.json").exists(), "--carry keeps local changes"
    assert not (Path(ws) / "meltano.yml").read_text().endswith("# note\n")
    (Path(ws) / "meltano.yml").write_text("changed on main\n")
    refused = run("commit", "-m", "x", MELTANO_FORGE_PROJECT_DIR=ws)
    assert refused.returncode == 4
    assert "set MELTANO_FORGE_BRANCH=development" in refused.stderr
    assert env.git("show", "main:meltano.yml") != "changed on main\n"
