"""CLI behaviour a person or a pipeline relies on: JSON, exit codes, signals, progress."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.client.conftest import Runner, seed_project
from tests.conftest import ForgeEnv

pytestmark = pytest.mark.parametrize("env", ["local"], indirect=True)


def test_run_json_keeps_stdout_machine_readable(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    result = run("--json", "run", "--", "meltano", "environment", "add", "ci")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["branch"] == "development"
    assert report["commit"]["paths"] == ["meltano.yml"]
    assert "Created new environment 'ci'" in result.stderr, "the child's output went to stderr"
    assert "download and extract development: 2 files" in result.stderr, (
        "progress as a log line off a TTY"
    )


def test_errors_are_one_line_with_the_right_code(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    run = Runner(env, tmp_path, no_git)
    missing = run("status", MELTANO_FORGE_REPO="")
    assert missing.returncode == 2
    assert "not a meltano-forge workspace" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = run("pull", MELTANO_FORGE_REPO="https://git.example.com/a/b", MELTANO_FORGE_PROVIDER="")
    assert bad.returncode == 2
    assert "MELTANO_FORGE_PROVIDER" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    unsafe = run("pull", MELTANO_FORGE_BRANCH="bad..branch")
    assert unsafe.returncode == 7
    as_json = run("--json", "pull", MELTANO_FORGE_BRANCH="bad..branch")
    assert json.loads(as_json.stdout)["exit_code"] == 7


def test_sigterm_is_forwarded_to_the_command(env: ForgeEnv, tmp_path: Path, no_git: Path) -> None:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    marker = tmp_path / "started"
    process = run.start(
        "run",
        "--",
        "sh",
        "-c",
        f"trap 'exit 42' TERM; touch {marker}; while true; do sleep 0.1; done",
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 42
