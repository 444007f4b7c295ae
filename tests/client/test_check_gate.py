"""The check as a gate before anything is pushed (issue 18, section 2): `commit` refuses a
change that makes the project fail and `promote` a branch that would make its target fail,
through the real CLI against a local repository and the GitHub double. The forge is read
back to show that nothing moved, and the double counts what the gate costs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from client.check import CheckResult, Finding, Severity, check_project
from client.check_gate import judge
from providers.contract import FileChange, FileMode
from tests.client.conftest import FIXTURES, PLUGIN, Runner, seed_project
from tests.conftest import ForgeEnv

LOCAL_AND_GITHUB = pytest.mark.parametrize("env", ["local", "github"], indirect=True)
ON_LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)
ON_GITHUB = pytest.mark.parametrize("env", ["github"], indirect=True)
MELTANO_YML = (FIXTURES / "meltano-config" / "meltano.yml").read_bytes() + PLUGIN.encode()
BROKEN_SCHEDULE = b"schedules:\n- name: nightly\n  interval: '@daily'\n  job: ghost\n"
"""A schedule naming a job that does not exist: `meltano schedule run` fails on it."""
BROKEN_JOB = b"jobs:\n- name: load\n  tasks:\n  - tap-ghost target-ghost\n"
"""A job whose tasks name no plugin: `meltano run load` fails on it."""


def workspace(env: ForgeEnv, run: Runner, folder: Path) -> dict[str, str]:
    """A pulled workspace of `development`; the environment that points at it."""
    where = {"MELTANO_FORGE_PROJECT_DIR": str(folder)}
    pulled = run("pull", **where)
    assert pulled.returncode == 0, pulled.stderr
    return where


def append(path: Path, data: bytes) -> None:
    path.write_bytes(path.read_bytes() + data)


@LOCAL_AND_GITHUB
def test_commit_refuses_a_change_that_breaks_the_project(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    where = workspace(env, run, tmp_path / "ws")
    append(tmp_path / "ws" / "meltano.yml", BROKEN_SCHEDULE)

    refused = run("commit", "-m", "Add a schedule", **where)
    assert refused.returncode == 9, refused.stdout + refused.stderr
    lines = refused.stdout.splitlines()
    assert lines[0].startswith("meltano.yml:"), "rendered as `meltano-forge check` renders it"
    assert ": error [schedule-target] the schedule 'nightly' runs the job 'ghost'" in lines[0]
    assert lines[-1] == "development with your changes: the check failed (1 error, 0 warnings)"
    assert "The check fails (1 error), so nothing was committed" in refused.stderr
    assert "or commit anyway with --no-verify" in refused.stderr
    assert env.forge.branch("development").head == base, "nothing reached the forge"

    as_json = run("--json", "commit", "-m", "Add a schedule", **where)
    assert as_json.returncode == 9
    document = json.loads(as_json.stdout)
    assert document["exit_code"] == 9
    assert document["check"]["ok"] is False
    assert document["check"]["allowed"] is False
    assert [e["rule"] for e in document["check"]["errors"]] == ["schedule-target"]
    assert env.forge.branch("development").head == base

    status = run("status", **where)
    assert "modified  meltano.yml" in status.stdout, "the change is still in the workspace"

    forced = run("commit", "-m", "Add a schedule", "--no-verify", **where)
    assert forced.returncode == 0, forced.stderr
    head = env.forge.branch("development").head
    assert head != base
    assert env.git("show", f"{head}:meltano.yml").endswith("job: ghost\n")


@LOCAL_AND_GITHUB
def test_a_broken_project_takes_changes_that_add_no_error_and_its_fix(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = env.seed({"meltano.yml": MELTANO_YML + BROKEN_SCHEDULE, "README.md": b"# w\n"})
    env.forge.create_branch("development", base)
    run = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    where = workspace(env, run, folder)

    (folder / "README.md").write_text("# warehouse\n")
    elsewhere = run("commit", "-m", "Describe", **where)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "already fails the check (1 error); this adds none" in elsewhere.stdout

    append(folder / "meltano.yml", BROKEN_JOB)
    worse = run("commit", "-m", "Add a job", **where)
    assert worse.returncode == 9, worse.stdout + worse.stderr
    assert "[job-task]" in worse.stdout
    assert "it adds 1 error that 'development'" in worse.stderr
    described = env.forge.branch("development").head
    assert env.git("show", f"{described}:README.md") == "# warehouse\n"

    (folder / "meltano.yml").write_bytes(MELTANO_YML)
    fixed = run("--json", "commit", "-m", "Fix the schedule", **where)
    assert fixed.returncode == 0, fixed.stderr
    check = json.loads(fixed.stdout)["check"]
    assert check["ok"] is True
    assert env.git_bytes("show", "development:meltano.yml") == MELTANO_YML


@ON_GITHUB
def test_what_the_gate_costs_in_forge_requests(env: ForgeEnv, tmp_path: Path, no_git: Path) -> None:
    """A change the check never reads costs no request; a change to meltano.yml costs one:
    its version at the base commit, for the rules that compare (a pip_url changed without
    its lock file). The rest of the project is the workspace's own files."""
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    where = workspace(env, run, folder)

    def cost(*flags: str) -> int:
        env.clear_log()
        done = run("commit", "-m", "m", *flags, **where)
        assert done.returncode == 0, done.stderr
        return env.requests()

    (folder / "transform.sql").write_text("select 1\n")
    unchecked = cost("--no-verify")
    (folder / "transform.sql").write_text("select 2\n")
    assert cost() == unchecked, "a file the check does not read costs nothing"
    append(folder / "meltano.yml", b"# one\n")
    unchecked = cost("--no-verify")
    append(folder / "meltano.yml", b"# two\n")
    checked = cost()
    assert checked == unchecked + 1, env.double.requests() if env.double else None
    assert env.requests("GET", r"/contents/meltano\.yml|/git/blobs/") == 1


@LOCAL_AND_GITHUB
def test_the_check_reads_only_the_project_folder_of_a_monorepo(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """`project_path`: the check sees the project's own files (a broken meltano.yml at the
    repository's root is not the project's), and its paths are project-relative."""
    base = env.seed(
        {
            "meltano.yml": b"not: [a, project\n",
            "warehouse/meltano.yml": MELTANO_YML,
            "warehouse/.gitignore": b"/.meltano\n.env\n",
        }
    )
    env.forge.create_branch("development", base)
    run = Runner(env, tmp_path, no_git)
    run.base["MELTANO_FORGE_PROJECT_PATH"] = "warehouse"
    folder = tmp_path / "ws"
    where = workspace(env, run, folder)
    append(folder / "meltano.yml", b"# fine\n")
    fine = run("commit", "-m", "fine", **where)
    assert fine.returncode == 0, fine.stdout + fine.stderr
    append(folder / "meltano.yml", BROKEN_SCHEDULE)
    broken = run("commit", "-m", "broken", **where)
    assert broken.returncode == 9, broken.stdout + broken.stderr
    assert broken.stdout.startswith("meltano.yml:"), "project-relative, as `check` shows it"
    assert env.git("show", "development:warehouse/meltano.yml").endswith("# fine\n")


def broken_development(env: ForgeEnv, base: str) -> str:
    """`development` one commit ahead of `main`, with a job whose tasks name no plugin."""
    return env.forge.commit(
        "development",
        base,
        [FileChange.put("meltano.yml", MELTANO_YML + BROKEN_JOB, base_mode=FileMode.REGULAR)],
        "Add a job",
    ).sha


@ON_LOCAL
def test_promote_shows_the_check_and_refuses_a_branch_that_breaks_main(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    head = broken_development(env, base)
    run = Runner(env, tmp_path, no_git)

    refused = run("promote")
    assert refused.returncode == 9, refused.stdout + refused.stderr
    assert "[job-task] the job 'load'" in refused.stdout
    assert f"development @ {head[:12]}: the check failed (1 error" in refused.stdout
    assert "1 error that 'main' does not have, so nothing was promoted" in refused.stderr
    assert "--override-check" in refused.stderr
    assert env.forge.branch("main").head == base, "nothing was promoted"

    as_json = json.loads(run("--json", "promote").stdout)
    assert as_json["exit_code"] == 9
    assert as_json["check"]["new_errors"][0]["rule"] == "job-task"

    os.chown(env.repo_dir, 65534, 65534)  # someone else's repository: this user may push only
    try:
        not_admin = run("promote", "--override-check")
    finally:
        os.chown(env.repo_dir, os.getuid(), os.getgid())
    assert not_admin.returncode == 5, not_admin.stdout + not_admin.stderr
    assert "Only an administrator of the repository may promote" in not_admin.stderr
    assert env.forge.branch("main").head == base

    overridden = run("promote", "--override-check")
    assert overridden.returncode == 0, overridden.stderr
    assert "as an administrator of the repository" in overridden.stdout
    assert "promoted development into main" in overridden.stdout
    assert env.forge.branch("main").head == head


@ON_GITHUB
def test_promote_on_github_opens_nothing_for_a_failing_branch(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    broken_development(env, base)
    assert env.double is not None
    run = Runner(env, tmp_path, no_git)
    refused = run("promote")
    assert refused.returncode == 9, refused.stdout + refused.stderr
    assert env.double.pulls.get(env.double_name, []) == []  # type: ignore[attr-defined]
    not_admin = run("promote", "--override-check")  # the suite's token may write, not administer
    assert not_admin.returncode == 5, not_admin.stdout + not_admin.stderr
    assert "does not administer it" in not_admin.stderr
    assert env.double.pulls.get(env.double_name, []) == []  # type: ignore[attr-defined]
    env.double.add_token("admin-token-0042", "admin")
    env.clear_log()
    opened = run("--json", "promote", "--override-check", MELTANO_FORGE_TOKEN="admin-token-0042")
    assert opened.returncode == 0, opened.stderr
    document = json.loads(opened.stdout)
    assert document["created"] is True
    assert document["check"]["allowed"] is False
    assert env.requests("POST", r"/pulls$") == 1


@LOCAL_AND_GITHUB
def test_promote_of_a_branch_that_adds_no_error_goes_ahead(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """main already fails; development fails the same way and changes a README: promoting
    it adds no error, so it goes ahead, and says that main already fails."""
    base = env.seed({"meltano.yml": MELTANO_YML + BROKEN_SCHEDULE, "README.md": b"# w\n"})
    env.forge.create_branch("development", base)
    env.forge.commit(
        "development",
        base,
        [FileChange.put("README.md", b"# warehouse\n", base_mode=FileMode.REGULAR)],
        "Describe",
    )
    run = Runner(env, tmp_path, no_git)
    done = run("promote")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "'main' already fails the check (1 error); this adds none" in done.stdout


def finding(rule: str, reason: str, line: int = 1) -> Finding:
    return Finding(rule, Severity.ERROR, "meltano.yml", line, reason, "Fix it")


OLD = finding("schedule-target", "the schedule 'a' runs the job 'x'", 10)
MOVED = finding("schedule-target", "the schedule 'a' runs the job 'x'", 14)
OTHER = finding("job-task", "the job 'j': 'y' names no plugin")
SECRET = finding("literal-secret", "the setting 'password' of 'vault' is written here")


@pytest.mark.parametrize(
    ("base", "after", "allowed", "new"),
    [
        ((), (), True, ()),
        ((), (OTHER,), False, (OTHER,)),
        ((OLD,), (MOVED,), True, ()),  # an edit above it moved the old error
        ((OLD,), (), True, ()),  # the fix
        ((OLD, OTHER), (OTHER,), True, ()),  # one error fixed, one left
        ((OLD, OTHER), (SECRET,), False, (SECRET,)),  # fewer, but a new one
        ((OLD,), (MOVED, MOVED), False, (MOVED,)),  # counted, not only named
    ],
    ids=["clean", "breaks", "moved", "fixed", "better", "traded", "repeated"],
)
def test_the_gate_rule(
    base: tuple[Finding, ...], after: tuple[Finding, ...], allowed: bool, new: tuple[Finding, ...]
) -> None:
    asked: list[bool] = []

    def base_check() -> CheckResult:
        asked.append(True)
        return CheckResult(base)

    verdict = judge(CheckResult(after), base_check)
    assert verdict.allowed is allowed
    assert verdict.new_errors == new
    assert asked == ([True] if after else []), "the base is read only when the result fails"


def test_meltano_forges_own_section_is_not_an_error() -> None:
    """`meltano_forge:` holds this tool's own settings: Meltano loads a project that has it."""
    section = b"meltano_forge:\n  working_branch: development\n"
    assert check_project({"meltano.yml": MELTANO_YML + section}).ok
    included = check_project(
        {
            "meltano.yml": MELTANO_YML + b"include_paths: ['./extra.meltano.yml']\n",
            "extra.meltano.yml": section,
        }
    )
    assert "schema" in included.rules(), "only meltano.yml's own top level holds it"
