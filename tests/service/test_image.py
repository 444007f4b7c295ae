"""The Dockerfile's invariants, its install steps exercised outside Docker, and the image
itself built and run (podman and buildah, no Docker daemon) against the forge doubles."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from service.webhooks import github_signature
from tests.client.conftest import seed_project
from tests.conftest import TOKEN, ForgeEnv
from tests.service import image
from tests.service.conftest import WEBHOOK_SECRET, Receiver, projects_file

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "tests" / "fixtures" / "webhooks"
UID = 10001
PROJECT = "/home/meltano/project"
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_dockerfile_invariants() -> None:
    instructions = [line for line in DOCKERFILE.splitlines() if line and not line.startswith("#")]
    assert instructions[0].startswith("FROM python:3.11-slim")
    assert not re.search(r"apt-get install[^\n]*\bgit\b", DOCKERFILE), "no git in the image"
    assert "command -v git" in DOCKERFILE, "the build checks that git is absent"
    assert "git must not be in this image" in DOCKERFILE
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users, "a USER instruction"
    assert users[-1] not in ("root", "0"), "runs as a non-root user"
    assert 'ENTRYPOINT ["meltano-forge"]' in instructions
    assert "/opt/meltano/bin/pip install meltano" in DOCKERFILE, "meltano in its own virtualenv"
    assert "/opt/meltano-forge/bin/pip install /src" in DOCKERFILE, (
        "meltano-forge in its own virtualenv"
    )


def test_examples_parse() -> None:
    compose = yaml.safe_load((ROOT / "examples" / "docker-compose.yml").read_text())
    assert compose["services"]["runner"]["command"][0] == "run"
    assert "MELTANO_FORGE_TOKEN_FILE" in compose["services"]["runner"]["environment"]
    kinds = [
        d["kind"]
        for f in (ROOT / "examples" / "kubernetes").glob("*.yaml")
        for d in yaml.safe_load_all(f.read_text())
    ]
    assert {"Deployment", "Service", "Job", "CronJob", "Secret"} <= set(kinds)


@pytest.mark.slow
def test_image_install_steps_without_git(tmp_path: Path) -> None:
    venv = tmp_path / "opt-meltano-forge"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(ROOT)], check=True, timeout=900
    )
    env = {"PATH": f"{venv / 'bin'}", "HOME": str(tmp_path)}
    assert not (venv / "bin" / "git").exists()
    for args in (["--help"], ["serve", "--help"], ["run", "--help"]):
        result = subprocess.run(
            [str(venv / "bin" / "meltano-forge"), *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    assert os.path.exists(venv / "lib")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.poll() is None, f"serve exited {server.returncode}:\n{log.read_text()}"
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"serve never answered /healthz:\n{log.read_text()}")


@pytest.mark.slow
@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_image_runs_and_serves_as_10001_without_git(
    env: ForgeEnv, tmp_path: Path, receiver: Receiver
) -> None:
    reason = image.unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the image: {reason}")
        pytest.skip(reason)
    built = image.build_image(ROOT, tmp_path)
    base = seed_project(env)
    location = env.make_config().location
    project = tmp_path / "project"
    project.mkdir()
    os.chown(project, UID, UID)  # a volume the image's user may write, as deployments do

    config = image.image_config(built.tag)
    assert (config["User"], config["Entrypoint"]) == (str(UID), ["meltano-forge"])
    assert config["WorkingDir"] == PROJECT

    with image.Container(built.tag) as box:
        which = box.run(["sh", "-c", "command -v git"])
        assert which.returncode != 0, f"git in the image: {which.stdout}"
        found = box.run(
            ["find", "/usr", "/opt", "(", "-name", "git", "-o", "-name", "git-*", ")"], user=None
        )
        assert (found.returncode, found.stdout) == (0, ""), found.stdout + found.stderr

        runner = {
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
            "MELTANO_FORGE_INSTALL": "never",
            "MELTANO_FORGE_REPO": location.web_url,
            "MELTANO_FORGE_PROVIDER": "github",
            "MELTANO_FORGE_API_URL": location.api_url,
            "MELTANO_FORGE_TOKEN": TOKEN,
        }
        done = box.run(
            ["meltano-forge", "run", "--", "meltano", "config", "set", "example", "a_string", "x1"],
            env=runner,
            volumes={str(project): PROJECT},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "auto-committed meltano.yml" in done.stdout
        assert env.git("rev-list", "--count", f"{base}..development").strip() == "1"
        assert env.git("log", "-1", "--format=%B", "development").startswith(
            "meltano config set example a_string"
        )
        committed = env.git("show", "development:meltano.yml")
        assert "a_string: x1" in committed
        assert env.head("main") == base
        assert (project / "meltano.yml").read_text() == committed, "the project is materialized"
        assert (project / ".gitignore").exists()
        assert (project / "meltano.yml").stat().st_uid == UID, "written as the image's user"

        projects = projects_file(tmp_path, env, receiver.url)
        port = free_port()
        log = tmp_path / "serve.log"
        serve = ["meltano-forge", "serve", "--host", "127.0.0.1", "--port", str(port)]
        with box.background(
            serve,
            log,
            env={"MELTANO_FORGE_PROJECTS_FILE": "/run/config/projects.yml"},
            volumes={str(projects): "/run/config/projects.yml:ro"},
        ) as server:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, server, log)
            push = json.loads((HOOKS / "github" / "push-with-new-branch.payload.json").read_bytes())
            push["ref"] = "refs/heads/main"  # the `prod` target watches main
            raw = json.dumps(push).encode()
            response = httpx.post(
                f"{url}/v1/projects/warehouse/webhooks",
                content=raw,
                headers={
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": "image-1",
                    "X-Hub-Signature-256": github_signature(WEBHOOK_SECRET, raw),
                    "Content-Type": "application/json",
                },
                timeout=60,
            )
            assert response.status_code == 202, response.text
            assert response.json() == {"status": "accepted", "deliveries": 1}
            deadline = time.monotonic() + 60
            while not receiver.calls and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(receiver.calls) == 1, f"no redeploy delivered:\n{log.read_text()}"
            delivered = json.loads(receiver.calls[0]["body"])
            assert (delivered["branch"], delivered["target"]) == ("main", "prod")
        assert server.returncode is not None, "serve stopped"
