"""Settings under `meltano_forge:` in the workspace's meltano.yml: below the environment,
kept by Meltano, and never a literal token."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.client.conftest import Runner, seed_project
from tests.conftest import TOKEN, ForgeEnv


def with_section(env: ForgeEnv, base: str, section: str) -> str:
    meltano_yml = env.git_bytes("show", f"{base}:meltano.yml")
    return env.seed(
        {"meltano.yml": meltano_yml + section.encode()}, branch="development", parent=base
    )


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_branch_settings_come_from_meltano_yml_and_the_environment_wins(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    with_section(
        env,
        base,
        f"meltano_forge:\n  repo: file://{env.repo_dir}\n"
        "  protected_branches: [main, development]\n",
    )
    run = Runner(env, tmp_path, no_git)
    folder = str(tmp_path / "ws")
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=folder).returncode == 0
    (Path(folder) / "README.md").write_text("edited\n")
    refused = run("commit", MELTANO_FORGE_PROJECT_DIR=folder)
    assert refused.returncode == 4, refused.stderr
    assert "The branch 'development' is read-only" in refused.stderr
    assert "warning" not in refused.stderr, "the same location as the environment's is quiet"
    alone = run(
        "commit", MELTANO_FORGE_PROJECT_DIR=folder, MELTANO_FORGE_REPO="", MELTANO_FORGE_PROVIDER=""
    )
    assert alone.returncode == 2, "a repository never points the runner at a path on the host"
    assert "meltano_forge.repo names a repository on this machine's disk" in alone.stderr
    allowed = run(
        "commit",
        MELTANO_FORGE_PROJECT_DIR=folder,
        MELTANO_FORGE_PROTECTED_BRANCHES="main",
    )
    assert allowed.returncode == 0, allowed.stderr
    assert env.git("show", "development:README.md") == "edited\n"


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_a_literal_token_in_meltano_yml_is_refused(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """Refused, and the workspace goes on with the environment's settings alone, so that
    `pull` can still fetch the commit that removes it."""
    base = seed_project(env)
    with_section(env, base, "meltano_forge:\n  token: ghp_this_should_never_be_here\n")
    run = Runner(env, tmp_path, no_git)
    folder = str(tmp_path / "ws")
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=folder).returncode == 0
    refused = run("status", MELTANO_FORGE_PROJECT_DIR=folder)
    assert refused.returncode == 0, refused.stderr
    assert "a token must never be committed" in refused.stderr
    assert "uses the environment's settings" in refused.stderr
    assert "token_env: VARIABLE or token_file: PATH" in refused.stderr
    assert "ghp_this_should_never_be_here" not in refused.stderr
    (Path(folder) / "meltano.yml").write_text("meltano_forge:\n  colour: blue\n")
    unknown = run("status", MELTANO_FORGE_PROJECT_DIR=folder)
    assert unknown.returncode == 0, unknown.stderr
    assert "does not take colour" in unknown.stderr
    assert "uses the environment's settings" in unknown.stderr


@pytest.mark.parametrize("globs", ['""', "[]", "[release-*]"])
@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_meltano_yml_may_protect_more_branches_never_fewer(
    env: ForgeEnv, tmp_path: Path, no_git: Path, globs: str
) -> None:
    """Repository content cannot unprotect `main`: its globs join the defaults (the
    environment's MELTANO_FORGE_PROTECTED_BRANCHES, when set, still wins as a whole)."""
    base = seed_project(env)
    meltano_yml = env.git_bytes("show", f"{base}:meltano.yml")
    head = env.seed(
        {"meltano.yml": meltano_yml + f"meltano_forge:\n  protected_branches: {globs}\n".encode()},
        parent=base,
    )
    run = Runner(env, tmp_path, no_git)
    folder = str(tmp_path / "ws")
    assert (
        run("pull", MELTANO_FORGE_PROJECT_DIR=folder, MELTANO_FORGE_BRANCH="main").returncode == 0
    )
    (Path(folder) / "README.md").write_text("pushed past the protection\n")
    refused = run("commit", MELTANO_FORGE_PROJECT_DIR=folder, MELTANO_FORGE_BRANCH="main")
    assert refused.returncode == 4, refused.stderr
    assert "The branch 'main' is read-only" in refused.stderr
    assert env.git("rev-parse", "main").strip() == head, "main did not move"


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_a_token_named_in_meltano_yml_is_read_from_the_environment(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    with_section(env, base, "meltano_forge:\n  token_env: GITHUB_TOKEN\n")
    run = Runner(env, tmp_path, no_git)
    folder = str(tmp_path / "ws")
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=folder).returncode == 0
    (Path(folder) / "README.md").write_text("via token_env\n")
    without = run("commit", MELTANO_FORGE_PROJECT_DIR=folder, MELTANO_FORGE_TOKEN="")
    assert without.returncode == 5, "no token at all"
    named = run(
        "commit",
        MELTANO_FORGE_PROJECT_DIR=folder,
        MELTANO_FORGE_TOKEN="",
        GITHUB_TOKEN=TOKEN,
    )
    assert named.returncode == 0, named.stderr
    assert env.git("show", "development:README.md") == "via token_env\n"


@pytest.mark.slow
@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_meltano_keeps_the_key_when_it_rewrites_meltano_yml(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    with_section(env, base, "meltano_forge:\n  working_branch: development\n")
    run = Runner(env, tmp_path, no_git)
    done = run("run", "--", "meltano", "config", "set", "example", "an_integer", "7")
    assert done.returncode == 0, done.stderr
    committed = yaml.safe_load(env.git("show", "development:meltano.yml"))
    assert committed["meltano_forge"] == {"working_branch": "development"}
    assert committed["plugins"]["utilities"][0]["config"]["an_integer"] == 7
