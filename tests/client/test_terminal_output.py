"""Names from a repository never steer the terminal: file names with ESC/OSC sequences,
CR or newlines are printed quoted and escaped (as git quotes paths) by every human-readable
command, through the real CLI in a real workspace; `--json` keeps them exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.client.conftest import Runner, seed_project
from tests.conftest import ForgeEnv

pytestmark = pytest.mark.parametrize("env", ["local"], indirect=True)
TITLE = "\x1b]0;x\x07"
"""An OSC sequence that re-titles the terminal window."""
FAKE = "a\nnothing to commit, working tree clean"
"""A newline that forges a line of `status`."""
CR = "\r"
HOSTILE = (TITLE, FAKE, CR)
RAW = ("\x1b", "\x07", "\r")


def _clean(text: str) -> None:
    """No control character but the newlines and tabs between the command's own lines."""
    for char in RAW:
        assert char not in text, f"{char!r} reached the terminal: {text!r}"
    lines = text.splitlines()
    assert "nothing to commit, working tree clean" not in lines, text


@pytest.fixture
def workspace(env: ForgeEnv, tmp_path: Path, no_git: Path) -> tuple[Runner, dict[str, str]]:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    where = {"MELTANO_FORGE_PROJECT_DIR": str(folder)}
    pulled = run("pull", **where)
    assert pulled.returncode == 0, pulled.stderr
    for name in HOSTILE:
        (folder / name).write_text("select 1;\n")
    return run, where


def test_status_and_diff_quote_hostile_names(workspace: tuple[Runner, dict[str, str]]) -> None:
    run, where = workspace
    status = run("status", **where)
    assert status.returncode == 0, status.stderr
    _clean(status.stdout)
    _clean(status.stderr)
    assert 'added     "\\033]0;x\\a"' in status.stdout
    assert 'added     "a\\nnothing to commit, working tree clean"' in status.stdout
    assert 'added     "\\r"' in status.stdout
    for option in ("--name-only", "--name-status", "--stat"):
        shown = run("diff", option, **where)
        assert shown.returncode == 0, shown.stderr
        _clean(shown.stdout)
    assert (
        '"a\\nnothing to commit, working tree clean"'
        in run("diff", "--name-only", **where).stdout.splitlines()
    )
    assert (
        ' "a\\nnothing to commit, working tree clean" | 1 +'
        in run("diff", "--stat", **where).stdout.splitlines()
    )

    as_json = run("--json", "status", **where)
    paths = {c["path"] for c in json.loads(as_json.stdout)["changes"]}
    assert set(HOSTILE) <= paths, "JSON keeps the exact names (escaped by the encoder)"
    assert "\x1b" not in as_json.stdout


def test_commit_run_and_errors_quote_hostile_names(
    workspace: tuple[Runner, dict[str, str]], tmp_path: Path
) -> None:
    run, where = workspace
    secret = tmp_path / "ws" / "\x1b[2J" / ".env.production"
    secret.parent.mkdir()
    secret.write_text("TOKEN=x\n")
    committed = run("commit", "-m", "hostile names", **where)
    assert committed.returncode == 0, committed.stderr
    _clean(committed.stdout)
    _clean(committed.stderr)
    assert 'held back "\\033[2J/.env.production"' in committed.stdout

    script = 'touch "$(printf "b\\033]0;y\\007")" "$(printf "c\\rd")"'
    ran = run("run", "--", "sh", "-c", script, **where)
    assert ran.returncode == 0, ran.stderr
    _clean(ran.stdout)
    assert '"b\\033]0;y\\a"' in ran.stdout
    assert '"c\\rd"' in ran.stdout

    (tmp_path / "ws" / FAKE).write_text("changed\n")
    refused = run("checkout", "main", **where)
    assert refused.returncode != 0
    _clean(refused.stderr)
    assert len(refused.stderr.strip().splitlines()) == 1, "an error stays one line"
