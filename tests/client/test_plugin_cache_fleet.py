"""A fleet of cold runners in service mode, with real `meltano` and real plugins from the
package index (tap-jsonl and target-jsonl): started at once, each in a container of its
own (a private mount namespace with its own folder at the image's one project path, a
fresh HOME and fresh uv and pip caches), they cost the forge one archive request, and
each plugin is installed once: the first runner takes the leases of the whole plugin set
and uploads it, the others wait for it and restore from the service. A later fresh
container restores both without asking for a lease. A first runner killed while it
installs holds its leases only until they expire; the next one then installs.

The bench (`bench/scenarios/coldstart_fleet.py`) runs the same fleet from 1 to 20."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from service.app import build_state, create_app
from service.settings import ServiceSettings
from tests.client.conftest import ROOT, meltano_dir
from tests.client.test_plugin_envs import seed
from tests.client.test_plugins_without_git import REGISTRY
from tests.conftest import TOKEN, ForgeEnv
from tests.service.conftest import WRITE, LiveServer, projects_file

GITHUB = pytest.mark.parametrize("env", ["github"], indirect=True)
RUNNERS = 4
ARCHIVES = r"/tarball/|/_codeload/"
"""A GitHub archive: the REST redirect or the codeload download it (or GraphQL) names."""
ELT = ["--json", "run", "--", "meltano", "run", "tap-jsonl", "target-jsonl"]


class Requests:
    """An ASGI layer that counts the service's requests by method and route."""

    def __init__(self, app: ASGIApp, seen: Counter[str]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            tail = str(scope["path"]).split("/v1/projects/warehouse", 1)[-1]
            route = "/plugin-envs/KEY" if tail.startswith("/plugin-envs/") else tail
            route = "/plugin-envs/leases" if tail.startswith("/plugin-envs/leases") else route
            self.seen[f"{scope['method']} {route}"] += 1
        await self.app(scope, receive, send)


def serve(env: ForgeEnv, tmp_path: Path, **extra: Any) -> Iterator[tuple[str, Counter[str], Path]]:
    """The service (with a plugin cache) on the double's project, its requests counted."""
    cache = tmp_path / "service-plugin-cache"
    settings = ServiceSettings(
        projects_file=projects_file(tmp_path, env, "http://127.0.0.1:9/unused"),
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        cache_dir=tmp_path / "archives",
        data_dir=tmp_path / "data",
        service_plugin_cache=cache,
        **extra,
    )
    state = build_state(settings)
    app = create_app(settings, state=state, deliver=False)
    seen: Counter[str] = Counter()
    app.add_middleware(Requests, seen=seen)
    with LiveServer(app) as url:
        yield url, seen, cache
    state.close()


@pytest.fixture
def service_url(env: ForgeEnv, tmp_path: Path) -> Iterator[tuple[str, Counter[str], Path]]:
    yield from serve(env, tmp_path)


def container(
    tmp_path: Path, url: str, project: Path, name: str, no_git: Path, **extra: str
) -> subprocess.Popen[str]:
    """One cold container: its own folder mounted at `project`, fresh HOME and caches."""
    box = tmp_path / "boxes" / name
    home = tmp_path / "homes" / name
    box.mkdir(parents=True)
    home.mkdir(parents=True)
    env = {
        "PATH": f"{no_git}:{meltano_dir()}:{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "UV_CACHE_DIR": str(home / "uv-cache"),
        "PIP_CACHE_DIR": str(home / "pip-cache"),
        "MELTANO_VENV_BACKEND": "uv",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
        "MELTANO_FORGE_REPO": f"{url}/v1/projects/warehouse",
        "MELTANO_FORGE_TOKEN": WRITE,
        "MELTANO_FORGE_INSTALL": "auto",
        "MELTANO_FORGE_PROJECT_DIR": str(project),
        "MELTANO_FORGE_WORKSPACE_ID": name,
        **REGISTRY,
        **extra,
    }
    return subprocess.Popen(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f'mount --bind "$0" {project} && exec "$@"',
            str(box),
            sys.executable,
            "-c",
            "from service.entry import main; main()",
            *ELT,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a test can kill it whole
    )


def finished(runner: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    out, err = runner.communicate(timeout=1200)
    assert runner.returncode == 0, out[-3000:] + err[-6000:]
    report: dict[str, Any] = json.loads(out)
    return report, err


@pytest.mark.slow
@GITHUB
def test_cold_runners_at_once_cost_one_archive_and_one_install_per_plugin(
    env: ForgeEnv,
    tmp_path: Path,
    no_git: Path,
    service_url: tuple[str, Counter[str], Path],
) -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("containers of one path need unshare and root")
    url, seen, cache = service_url
    seed(env)
    env.clear_log()
    project = tmp_path / "image" / "project"  # the one path every container has
    project.mkdir(parents=True)
    runners = [container(tmp_path, url, project, f"c{i}", no_git) for i in range(RUNNERS)]
    results = [finished(r) for r in runners]
    reports = [report for report, _ in results]

    actions = Counter((p["name"], p["action"]) for r in reports for p in r["plugins"])
    assert actions == {
        ("tap-jsonl", "installed"): 1,
        ("target-jsonl", "installed"): 1,
        ("tap-jsonl", "restored"): RUNNERS - 1,
        ("target-jsonl", "restored"): RUNNERS - 1,
    }, actions
    installers = [r for r in reports if r["installed"]]
    assert len(installers) == 1, "one runner installed the whole plugin set"
    uploads = [p["cache"] for p in installers[0]["plugins"]]
    assert all(u.startswith("uploaded to the service in ") for u in uploads), uploads
    restored = [p for r in reports if not r["installed"] for p in r["plugins"]]
    assert {p["source"] for p in restored} == {"service"}
    waiting = [err for _, err in results if "waiting for another runner" in err]
    restored_lines = [err for _, err in results if "restored from the service cache" in err]
    assert len(restored_lines) == RUNNERS - 1
    assert len(waiting) <= RUNNERS - 1
    for i in range(RUNNERS):
        assert list((tmp_path / "boxes" / f"c{i}" / "out").glob("people-*.jsonl")), i

    assert env.requests("GET", ARCHIVES) == 1, "one archive request for the SHA"
    assert seen["GET /archive"] == RUNNERS
    assert seen["PUT /plugin-envs/KEY"] == 2, "one upload per plugin"
    entries = sorted((cache / "warehouse" / "v1" / "entries").glob("*.json"))
    assert len(entries) == 2
    assert TOKEN.encode() not in b"".join(p.read_bytes() for p in entries)
    assert WRITE.encode() not in b"".join(p.read_bytes() for p in entries)

    # A later fresh container: two GETs of entries, no lease asked, nothing installed.
    before = Counter(seen)
    report, err = finished(container(tmp_path, url, project, "late", no_git))
    assert {p["name"]: p["action"] for p in report["plugins"]} == {
        "tap-jsonl": "restored",
        "target-jsonl": "restored",
    }
    assert "Installing" not in err
    delta = Counter(seen)
    delta.subtract(before)
    assert delta["GET /plugin-envs/KEY"] == 2
    assert delta["POST /plugin-envs/leases"] == 0
    assert env.requests("GET", ARCHIVES) == 1, "the archive came from the service's cache"
    assert httpx.get(f"{url}/healthz").status_code == 200


@pytest.mark.slow
@GITHUB
def test_a_killed_installer_holds_its_leases_only_until_they_expire(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """The first runner takes the leases and is SIGKILLed while installing (its renewals
    stop with it); the next waits for them, then installs and uploads the plugins itself."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("containers of one path need unshare and root")
    for url, seen, cache in serve(env, tmp_path, service_plugin_lease_seconds=4.0):
        seed(env)
        project = tmp_path / "image" / "project"
        project.mkdir(parents=True)
        first = container(tmp_path, url, project, "killed", no_git)
        assert first.stderr is not None
        lines = []
        for line in first.stderr:
            lines.append(line)
            if "installing extractor 'tap-jsonl'" in line:
                break
        assert seen["POST /plugin-envs/leases"] == 1, lines
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=60)
        second = container(tmp_path, url, project, "next", no_git)
        report, err = finished(second)
        assert {p["name"]: p["action"] for p in report["plugins"]} == {
            "tap-jsonl": "installed",
            "target-jsonl": "installed",
        }
        assert "waiting for another runner that is installing" in err
        assert all(p["cache"].startswith("uploaded to the service") for p in report["plugins"])
        assert len(list((cache / "warehouse" / "v1" / "entries").glob("*.json"))) == 2
        assert list((tmp_path / "boxes" / "next" / "out").glob("people-*.jsonl"))


@pytest.mark.slow
@GITHUB
def test_a_folder_cache_and_the_services_are_two_tiers(
    env: ForgeEnv, tmp_path: Path, no_git: Path, service_url: tuple[str, Counter[str], Path]
) -> None:
    """With MELTANO_FORGE_PLUGIN_CACHE set too, an install fills both; a container with
    another (empty) folder cache restores from the service, one with the first folder from
    the folder, asking the service nothing about plugins."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("containers of one path need unshare and root")
    url, seen, _ = service_url
    seed(env)
    project = tmp_path / "image" / "project"
    project.mkdir(parents=True)
    volume = str(tmp_path / "volume-cache")
    first, _ = finished(
        container(tmp_path, url, project, "first", no_git, MELTANO_FORGE_PLUGIN_CACHE=volume)
    )
    assert [p["action"] for p in first["plugins"]] == ["installed", "installed"]
    assert all(p["cache"].startswith("stored; uploaded to the service") for p in first["plugins"])
    assert seen["PUT /plugin-envs/KEY"] == 2

    other = str(tmp_path / "other-node-cache")
    second, err = finished(
        container(tmp_path, url, project, "second", no_git, MELTANO_FORGE_PLUGIN_CACHE=other)
    )
    assert [(p["action"], p["source"]) for p in second["plugins"]] == [("restored", "service")] * 2
    assert "restored from the service cache" in err

    before = Counter(seen)
    third, _ = finished(
        container(tmp_path, url, project, "third", no_git, MELTANO_FORGE_PLUGIN_CACHE=volume)
    )
    assert [(p["action"], p["source"]) for p in third["plugins"]] == [
        ("restored", "plugin cache")
    ] * 2
    asked = Counter(seen)
    asked.subtract(before)
    assert asked["GET /plugin-envs/KEY"] == 0
    assert asked["POST /plugin-envs/leases"] == 0
