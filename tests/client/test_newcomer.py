"""What a first-time user meets in the first ten minutes: options in either place, the
version, honest messages, defaults that read well in history, and a complete README."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from client.settings import Settings, settings_table
from tests.client.conftest import ROOT, Runner, seed_project
from tests.conftest import ForgeEnv

LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)


@LOCAL
def test_output_options_before_or_after_the_command_and_the_version(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    ws = str(tmp_path / "ws")
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=ws).returncode == 0
    for args in (("--json", "status"), ("status", "--json")):
        result = run(*args, MELTANO_FORGE_PROJECT_DIR=ws)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["branch"] == "development"
    verbose = run("status", "--verbose", MELTANO_FORGE_PROJECT_DIR=ws)
    assert verbose.returncode == 0, verbose.stderr
    error = run("status", "--json", MELTANO_FORGE_PROJECT_DIR=str(tmp_path / "nowhere"))
    assert error.returncode == 2
    assert "not a meltano-forge workspace" in json.loads(error.stdout)["error"]
    version = run("--version")
    assert version.returncode == 0
    assert re.fullmatch(r"meltano-forge, version \d+\.\d+\.\d+\n", version.stdout)


@LOCAL
def test_checkout_of_a_missing_branch_names_the_closest_and_wants_create(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    env.forge.create_branch("development-aj", base)
    run = Runner(env, tmp_path, no_git)
    ws = str(tmp_path / "ws")
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=ws).returncode == 0
    typo = run("checkout", "developmnet", MELTANO_FORGE_PROJECT_DIR=ws)
    assert typo.returncode == 2
    assert "There is no branch 'developmnet'" in typo.stderr
    assert "'development'" in typo.stderr
    assert "pass --create (-b)" in typo.stderr
    assert "developmnet" not in env.git("branch", "--list"), "a typo creates nothing"
    created = run("checkout", "-b", "feature-x", MELTANO_FORGE_PROJECT_DIR=ws)
    assert created.returncode == 0, created.stderr
    assert "created from development" in created.stdout
    assert env.head("feature-x") == env.head("development")


@LOCAL
def test_forced_read_only_says_which_setting_and_how_to_lift_it(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    ws = str(tmp_path / "ws")
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=ws).returncode == 0
    (Path(ws) / "meltano.yml").write_text("changed\n")
    refused = run("commit", MELTANO_FORGE_PROJECT_DIR=ws, MELTANO_FORGE_READ_ONLY="true")
    assert refused.returncode == 4
    assert "read-only because MELTANO_FORGE_READ_ONLY is true" in refused.stderr
    assert "Unset MELTANO_FORGE_READ_ONLY (or set it to false)" in refused.stderr
    assert "Work on 'development' instead" not in refused.stderr


@LOCAL
def test_settings_errors_name_the_variable_once(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    run = Runner(env, tmp_path, no_git)
    missing = run("pull", MELTANO_FORGE_TOKEN="", MELTANO_FORGE_TOKEN_FILE="/nonexistent/token")
    assert missing.returncode == 2
    assert missing.stderr.startswith(
        "meltano-forge: MELTANO_FORGE_TOKEN_FILE cannot be read (/nonexistent/token)"
    )
    assert "_settings" not in missing.stderr
    boolean = run("pull", MELTANO_FORGE_AUTO_COMMIT="maybe")
    assert boolean.returncode == 2
    assert boolean.stderr.startswith("meltano-forge: MELTANO_FORGE_AUTO_COMMIT: ")


@LOCAL
def test_unsupported_schemes_and_remote_file_urls_are_refused(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    run = Runner(env, tmp_path, no_git)
    ftp = run("pull", MELTANO_FORGE_REPO="ftp://files.example.com/repo.git")
    assert ftp.returncode == 2
    assert "unsupported scheme 'ftp://'" in ftp.stderr
    assert "https://" in ftp.stderr
    assert "file://" in ftp.stderr
    remote = run("pull", MELTANO_FORGE_REPO=f"file://fileserver{env.repo_dir}")
    assert remote.returncode == 2
    assert "names a file on another host (fileserver)" in remote.stderr


@pytest.mark.parametrize("env", ["github", "gitlab"], indirect=True)
def test_no_token_says_so_and_which_variable(env: ForgeEnv, tmp_path: Path, no_git: Path) -> None:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    result = run("pull", MELTANO_FORGE_TOKEN="")
    assert result.returncode == 5
    assert "No token is set" in result.stderr
    assert "Set MELTANO_FORGE_TOKEN, or MELTANO_FORGE_TOKEN_FILE" in result.stderr
    assert "rejected the token" not in result.stderr
    wrong = run("pull", MELTANO_FORGE_TOKEN="not-the-token")
    assert wrong.returncode == 5
    assert "rejected the token" in wrong.stderr


@LOCAL
def test_local_commits_are_by_the_person_and_messages_name_command_and_files(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    done = run(
        "run",
        "--",
        "meltano",
        "config",
        "set",
        "example",
        "a_string",
        "s3cret-value",
        GIT_AUTHOR_NAME="Ada Lovelace",
        GIT_AUTHOR_EMAIL="ada@example.com",
    )
    assert done.returncode == 0, done.stderr
    log = env.git("log", "-1", "--format=%an <%ae>%n%B", "development")
    assert log.startswith("Ada Lovelace <ada@example.com>\nmeltano config set example a_string: ")
    assert "meltano.yml" in log.splitlines()[1]
    assert "s3cret-value" not in log, "config set values never reach a message"
    assert "s3cret-value" in env.git("show", "development:meltano.yml")

    by_email = run("run", "--", "meltano", "environment", "add", "qa", EMAIL="ops@example.com")
    assert by_email.returncode == 0, by_email.stderr
    assert env.git("log", "-1", "--format=%an <%ae>", "development") == "ops <ops@example.com>\n"

    anonymous = run("run", "--", "meltano", "environment", "add", "ci")
    assert anonymous.returncode == 0, anonymous.stderr
    author = env.git("log", "-1", "--format=%ae", "development").strip()
    assert author != "meltano-forge@localhost"
    assert re.fullmatch(r"[^@\s]+@[^@\s]+", author)

    ws = str(tmp_path / "manual")
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=ws).returncode == 0
    (Path(ws) / "meltano.yml").write_text((Path(ws) / "meltano.yml").read_text() + "# hi\n")
    (Path(ws) / "plugins").mkdir()
    (Path(ws) / "plugins" / "a.lock").write_text("{}\n")
    (Path(ws) / "plugins" / "b.lock").write_text("{}\n")
    manual = run("commit", MELTANO_FORGE_PROJECT_DIR=ws)
    assert manual.returncode == 0, manual.stderr
    assert "committed 3 files" in manual.stdout
    headline = env.git("log", "-1", "--format=%s", "development").strip()
    assert headline == "Update meltano.yml and 2 lock files"


@LOCAL
def test_project_readonly_in_meltano_yml_is_said_once(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    meltano_yml = env.git_bytes("show", f"{base}:meltano.yml")
    env.seed(
        {"meltano.yml": meltano_yml + b"project_readonly: true\n"},
        branch="development",
        parent=base,
    )
    run = Runner(env, tmp_path, no_git)
    result = run("run", "--", "meltano", "config", "set", "example", "a_string", "x")
    notice = "meltano.yml sets project_readonly: true"
    assert result.stderr.count(notice) == 1, result.stderr
    assert "nothing will be committed" in result.stderr


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_table() in readme, "regenerate with: python -m client.settings"
    for name in Settings.model_fields:
        assert f"`MELTANO_FORGE_{name.upper()}`" in readme
