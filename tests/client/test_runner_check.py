"""The runner's auto-commit passes the project check first (issue 18, section 2), with real
`meltano` writing the project: what Meltano writes after a successful command lands on
the working branch; a result that fails the check goes to a rescue branch, never to the
working branch, and the run says so, in words and in `--json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.client.conftest import Runner, seed_project
from tests.conftest import ForgeEnv

pytestmark = pytest.mark.slow
LOCAL_AND_GITHUB = pytest.mark.parametrize("env", ["local", "github"], indirect=True)
ON_LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)
SECRET_PLUGIN = """  - name: vault
    namespace: vault
    settings:
    - name: password
      kind: password
    config:
      password: hunter2
"""
"""A plugin whose `kind: password` setting holds a literal: Meltano runs it, and the value
is in the repository's history for good once it is pushed."""


@ON_LOCAL
def test_what_meltano_writes_after_a_successful_command_lands(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    folder = {"MELTANO_FORGE_PROJECT_DIR": str(tmp_path / "ws")}
    commands = [
        ("meltano", "job", "add", "load", "--tasks", "example"),
        ("meltano", "schedule", "add", "nightly", "--job", "load", "--interval", "@daily"),
        ("meltano", "environment", "add", "staging"),
        ("meltano", "config", "set", "example", "a_string", "hello"),
    ]
    for command in commands:
        done = run("--json", "run", "--", *command, **folder)
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert report["commit"]["check"]["ok"] is True, report["commit"]["check"]
        assert report["commit"]["check_failed"] is False
        assert report["commit"]["side_branch"] is None
    assert env.git("rev-list", "--count", f"{base}..development").strip() == str(len(commands))
    meltano_yml = env.git("show", "development:meltano.yml")
    assert "job: load" in meltano_yml
    assert "- name: staging" in meltano_yml
    assert env.git("branch", "--list", "development-rescue-*") == ""


@LOCAL_AND_GITHUB
def test_a_schedule_meltano_writes_for_a_missing_job_goes_to_a_rescue_branch(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """`meltano schedule add` does not look the job up: it exits 0 and leaves a schedule no
    runner can run. The check refuses it for the working branch."""
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    folder = {"MELTANO_FORGE_PROJECT_DIR": str(tmp_path / "ws")}
    command = ("meltano", "schedule", "add", "nightly", "--job", "ghost", "--interval", "@daily")
    done = run("run", "--", *command, **folder)
    assert done.returncode == 9, done.stdout + done.stderr
    assert "Scheduled job 'nightly'" in done.stdout + done.stderr, "Meltano itself succeeded"
    assert "error [schedule-target] the schedule 'nightly' runs the job 'ghost'" in done.stdout
    rescues = [
        line.split()[-1]
        for line in env.git("branch", "--list", "development-rescue-*").splitlines()
    ]
    assert len(rescues) == 1
    assert f"the changes are saved on '{rescues[0]}', not on 'development'" in done.stdout
    assert "the check fails on what the command left" in done.stderr
    assert env.forge.branch("development").head == base, "never on the working branch"
    assert env.git("show", f"{rescues[0]}:meltano.yml").endswith("job: ghost\n")

    again = run("--json", "run", "--", "true", **folder)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["commit"] is None, "the rescued change is not committed again"
    assert env.forge.branch("development").head == base


@ON_LOCAL
def test_a_literal_secret_written_by_the_command_goes_to_a_rescue_branch(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    script = f"printf '%s' '{SECRET_PLUGIN}' >> meltano.yml"
    done = run("--json", "run", "--", "sh", "-c", script)
    assert done.returncode == 9, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["exit_code"] == 9
    commit = report["commit"]
    assert commit["check_failed"] is True
    assert commit["side_branch"].startswith("development-rescue-")
    assert commit["branch"] == "development"
    assert [e["rule"] for e in commit["check"]["new_errors"]] == ["literal-secret"]
    assert commit["check"]["allowed"] is False
    assert env.forge.branch("development").head == base
    assert "hunter2" in env.git("show", f"{commit['side_branch']}:meltano.yml")
    assert "hunter2" not in done.stdout, "the finding names the setting, never its value"
