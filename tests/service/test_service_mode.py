"""Service mode: runners hold only a service token; the service holds the forge's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client.conftest import FIXTURES, PLUGIN, Runner, seed_project
from tests.client.test_container_workspace import assert_bundled, read_only_runner
from tests.conftest import TOKEN, ForgeEnv
from tests.service.conftest import READ, WRITE, Service

on_github = pytest.mark.parametrize("env", ["github"], indirect=True)


@pytest.mark.slow
@on_github
def test_runner_story_through_the_service(
    service: Service, env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    meltano_yml = (FIXTURES / "meltano-config" / "meltano.yml").read_bytes() + PLUGIN.encode()
    base = env.seed({"meltano.yml": meltano_yml, ".gitignore": b"/.meltano\n.env\n"})
    run = Runner(env, tmp_path, no_git)
    run.base.update(
        MELTANO_FORGE_REPO=str(service.client.base_url).rstrip("/") + "/v1/projects/warehouse",
        MELTANO_FORGE_TOKEN=WRITE,
        MELTANO_FORGE_PROVIDER="",
        MELTANO_FORGE_API_URL="",
        MELTANO_FORGE_WORKSPACE_ID="runner-7",
    )
    assert TOKEN not in run.base.values(), "the runner never sees the forge token"
    first = run("run", "--", "meltano", "config", "set", "example", "a_string", "via-service")
    assert first.returncode == 0, first.stderr
    second = run("run", "--", "meltano", "environment", "add", "ci")
    assert second.returncode == 0, second.stderr
    assert "a_string: via-service" in env.git("show", "development:meltano.yml")
    assert "- name: ci" in env.git("show", "development:meltano.yml")
    assert env.git("rev-list", "--count", f"{base}..development").strip() == "2"
    refused = run(
        "run", "--", "meltano", "environment", "add", "hotfix", MELTANO_FORGE_BRANCH="main"
    )
    assert refused.returncode == 1
    assert "read-only" in refused.stderr
    assert env.head("main") == base
    reported = service.get("/workspaces", token=READ).json()
    assert [(w["id"], w["branch"], w["dirty"]) for w in reported] == [("runner-7", "main", [])]
    assert env.requests("GET", r"/tarball/") <= 3, "archives came from the service's cache"


@on_github
def test_a_read_service_token_runs_read_only_and_bundles_the_change(
    service: Service, env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    run = read_only_runner(env, tmp_path, no_git, READ)
    run.base.update(
        MELTANO_FORGE_REPO=str(service.client.base_url).rstrip("/") + "/v1/projects/warehouse",
        MELTANO_FORGE_PROVIDER="",
        MELTANO_FORGE_API_URL="",
    )
    folder = tmp_path / "ws"
    result = run(
        "run",
        "--",
        "sh",
        "-c",
        "echo '# made anyway' >> meltano.yml",
        MELTANO_FORGE_PROJECT_DIR=str(folder),
    )
    assert_bundled(result, folder, base)
    assert env.head("development") == base
