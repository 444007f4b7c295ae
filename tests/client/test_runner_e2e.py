"""The runner end to end: real `meltano`, each forge, and no git anywhere on PATH."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client.conftest import FIXTURES, STEPS, Runner, seed_project
from tests.conftest import Files, ForgeEnv


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


def manifest_project() -> Files:
    """tests/fixtures/meltano/meltano-manifest as a repository tree (its docs left out)."""
    root = FIXTURES / "meltano-manifest"
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("index.md", "ending-meltano.yml")
    }


@pytest.mark.slow
def test_multi_file_project_commits_exactly_what_meltano_changed(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    files = manifest_project()
    base = env.seed(files)
    env.forge.create_branch("development", base)
    run = Runner(env, tmp_path, no_git)
    ws = tmp_path / "long-lived"
    commands = [
        ["meltano", "config", "set", "tap-cloudwatch", "aws_region_name", "eu-west-1"],
        ["meltano", "environment", "add", "ci"],
        [
            "meltano",
            "schedule",
            "add",
            "nightly_cloudwatch",
            "--job",
            "slack_notifications",
            "--interval",
            "@daily",
        ],
        ["meltano", "config", "set", "tap-github", "auth_token", "not-a-real-token"],
    ]
    for command in commands:
        before = env.head("development")
        assert before is not None
        result = run("run", "--", *command, MELTANO_FORGE_PROJECT_DIR=str(ws))
        assert result.returncode == 0, result.stderr
        after = env.head("development")
        tracked = set(env.git("ls-tree", "-r", "--name-only", before).split())
        on_disk = {
            str(p.relative_to(ws))
            for p in ws.rglob("*")
            if p.is_file()
            and not str(p.relative_to(ws)).startswith((".meltano/", ".meltano-forge/"))
            and p.name != ".env"
        }
        expected = {
            p
            for p in on_disk
            if p not in tracked or env.git_bytes("show", f"{before}:{p}") != (ws / p).read_bytes()
        }
        expected |= {p for p in tracked if p not in on_disk}
        if not expected:
            assert after == before
            continue
        assert after is not None
        assert after != before
        committed = set(
            env.git("diff-tree", "-r", "--no-commit-id", "--name-only", before, after).split()
        )
        assert committed == expected
        assert all(
            line.startswith("100644") for line in env.git("ls-tree", "-r", after).splitlines()
        ), "modes unchanged"
        assert not any(
            p.startswith(".meltano/")
            for p in env.git("ls-tree", "-r", "--name-only", after).split()
        )
    assert "held back .env" in result.stdout, "the secret Meltano wrote to .env is reported"
    assert ".env" not in env.git("ls-tree", "-r", "--name-only", "development").split()
    assert "not-a-real-token" in (ws / ".env").read_text(), "the secret stays on disk"
    assert "ci" in env.git("show", "development:meltano.yml")
    assert env.git("grep", "-l", "nightly_cloudwatch", "development").strip(), "the schedule landed"
    assert "eu-west-1" in env.git("show", "development:extractors.meltano.yml")
