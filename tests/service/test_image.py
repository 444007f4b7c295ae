"""The Dockerfile's invariants, and its install steps exercised outside Docker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
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
