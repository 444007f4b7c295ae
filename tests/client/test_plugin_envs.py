"""Plugin environments through the real runner, real `meltano` and real plugins from the
package index (tap-jsonl, an SDK extractor, and target-jsonl): each plugin installed only
when what decides its environment changed, environments outside the project folder
(`MELTANO_SYS_DIR_ROOT`, as a baked image keeps them) reused, a fresh container restoring
from the plugin cache, and a Meltano command as the container's arguments.

Installs use uv and this machine's uv cache (`UV_CACHE_DIR`), so each costs seconds; the
point of these tests is what is installed, not how fast the index is."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from client.fingerprint import FINGERPRINT_FILE, fingerprint
from client.install import InstallLog
from client.plugin_envs import environments
from tests.client.conftest import FIXTURES, PLUGIN, Runner, meltano_dir, seed_project
from tests.client.test_plugins_without_git import REGISTRY
from tests.conftest import ForgeEnv

LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)
TAP = "tap-jsonl==0.3.1"
TARGET = "target-jsonl==0.1.4"


def meltano_yml(tap: str = TAP, target: str = TARGET) -> bytes:
    return f"""version: 1
default_environment: dev
project_id: plugin-envs-test
environments:
- name: dev
plugins:
  extractors:
  - name: tap-jsonl
    namespace: tap_jsonl
    pip_url: {tap}
    executable: tap-jsonl
    config:
      path: data/people.jsonl
      stream_name: people
      primary_keys: [id]
  loaders:
  - name: target-jsonl
    namespace: target_jsonl
    pip_url: {target}
    executable: target-jsonl
    config:
      destination_path: out
""".encode()


def seed(env: ForgeEnv, **pip_urls: str) -> str:
    base = env.seed(
        {
            "meltano.yml": meltano_yml(**pip_urls),
            "data/people.jsonl": b'{"id": 1, "name": "ada"}\n{"id": 2, "name": "grace"}\n',
            "out/.keep": b"",
            ".gitignore": b"/.meltano\n/out/*.jsonl\n.env\n",
        },
        branch="development",
    )
    return base


def installs(runner: Runner) -> dict[str, str]:
    """uv, this machine's uv cache and its path to the index."""
    cache = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")
    runner.base.update(
        {"MELTANO_VENV_BACKEND": "uv", "UV_CACHE_DIR": cache, "MELTANO_FORGE_INSTALL": "auto"}
    )
    runner.base.update(REGISTRY)
    return runner.base


def ran(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def actions(report: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["action"] for p in report["plugins"]}


def meltano_python() -> str:
    return str(meltano_dir() / "python")


@pytest.mark.slow
@LOCAL
def test_each_plugin_is_installed_only_when_its_environment_changes(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed(env)
    runner = Runner(env, tmp_path, no_git)
    installs(runner)
    ws = tmp_path / "ws"
    elt = ("--json", "run", "--", "meltano", "run", "tap-jsonl", "target-jsonl")
    first = ran(runner(*elt, MELTANO_FORGE_PROJECT_DIR=str(ws)))
    assert actions(first) == {"tap-jsonl": "installed", "target-jsonl": "installed"}
    assert all(p["why"] == "it is not installed here" for p in first["plugins"])
    assert all(p["seconds"] > 0 for p in first["plugins"]), first["plugins"]
    assert first["installed"] is True
    assert list((ws / "out").glob("people-*.jsonl")), "the command ran"

    decided, _ = environments(ws, {}, meltano_python)
    for plugin_env in decided:
        written = (plugin_env.venv / FINGERPRINT_FILE).read_text()
        assert plugin_env.wanted == written, f"{plugin_env.label}: ours agrees with Meltano's"

    config = runner(
        "--json",
        "run",
        "--",
        "meltano",
        "config",
        "set",
        "tap-jsonl",
        "stream_name",
        "persons",
        MELTANO_FORGE_PROJECT_DIR=str(ws),
    )
    after_config = ran(config)
    assert after_config["commit"]["paths"] == ["meltano.yml"], "the config set was committed"
    assert actions(after_config) == {"tap-jsonl": "reused", "target-jsonl": "reused"}
    assert after_config["installed"] is False
    again = runner(*elt, MELTANO_FORGE_PROJECT_DIR=str(ws))
    assert actions(ran(again)) == {"tap-jsonl": "reused", "target-jsonl": "reused"}
    assert "Installing" not in again.stderr, "the run after a config set installs nothing"
    assert "installing plugins: none needed (2 reused)" in again.stderr

    env.seed(
        {
            "meltano.yml": meltano_yml(target="target-jsonl>=0.1.4,<0.2").replace(
                b"stream_name: people", b"stream_name: persons"
            )
        },
        branch="development",
        parent=env.head("development"),
    )
    changed = runner(*elt, MELTANO_FORGE_PROJECT_DIR=str(ws))
    report = ran(changed)
    assert actions(report) == {"tap-jsonl": "reused", "target-jsonl": "installed"}
    why = {p["name"]: p["why"] for p in report["plugins"]}
    assert why["target-jsonl"] == "its pip_url or Python changed since it was installed"
    assert "Installing loader 'target-jsonl'" in changed.stderr
    assert "Installing extractor" not in changed.stderr, "only the changed plugin"
    assert "loader 'target-jsonl': installed in" in changed.stderr
    assert "extractor 'tap-jsonl': reused (its environment matches its pip_url)" in changed.stderr


@pytest.mark.slow
@LOCAL
def test_environments_outside_the_project_folder_are_reused_wherever_they_came_from(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """What a baked image does: `meltano install` at build time with `.meltano` outside the
    project folder (`MELTANO_SYS_DIR_ROOT`); a fresh folder at run time installs nothing."""
    seed(env)
    runner = Runner(env, tmp_path, no_git)
    base = installs(runner)
    system = tmp_path / "baked-meltano"
    build = tmp_path / "build"
    build.mkdir()
    (build / "meltano.yml").write_bytes(meltano_yml())
    baked = subprocess.run(
        [str(meltano_dir() / "meltano"), "install"],
        cwd=build,
        env={**base, "MELTANO_SYS_DIR_ROOT": str(system)},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert baked.returncode == 0, baked.stderr[-3000:]
    assert not (build / ".meltano").exists()
    shutil.rmtree(build)

    ws = tmp_path / "volume"
    result = runner(
        "--json",
        "run",
        "--",
        "meltano",
        "run",
        "tap-jsonl",
        "target-jsonl",
        MELTANO_FORGE_PROJECT_DIR=str(ws),
        MELTANO_SYS_DIR_ROOT=str(system),
    )
    report = ran(result)
    assert actions(report) == {"tap-jsonl": "reused", "target-jsonl": "reused"}
    assert report["installed"] is False
    assert "Installing" not in result.stderr
    assert list((ws / "out").glob("people-*.jsonl")), "the command ran"
    assert not (ws / ".meltano" / "extractors").exists(), "nothing installed in the volume"
    assert report["ready_seconds"] > 0


@pytest.mark.slow
@LOCAL
def test_a_fresh_container_restores_its_plugins_from_the_cache(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed(env)
    runner = Runner(env, tmp_path, no_git)
    installs(runner)
    cache = tmp_path / "plugin-cache"
    ws = tmp_path / "container" / "project"  # the same path in every container
    elt = ("--json", "run", "--", "meltano", "run", "tap-jsonl", "target-jsonl")
    with_cache = {"MELTANO_FORGE_PROJECT_DIR": str(ws), "MELTANO_FORGE_PLUGIN_CACHE": str(cache)}
    (tmp_path / ".env-secret").write_text("never")

    first = ran(runner(*elt, **with_cache))
    assert actions(first) == {"tap-jsonl": "installed", "target-jsonl": "installed"}
    assert {p["cache"] for p in first["plugins"]} == {"stored"}
    (ws / ".env").write_text("TAP_JSONL_PASSWORD=hunter2-secret\n")
    entries = sorted((cache / "v1" / "entries").iterdir())
    assert len(entries) == 4, entries
    for entry in entries:
        assert b"hunter2-secret" not in entry.read_bytes()
    with tarfile.open(next(e for e in entries if e.stat().st_size > 20_000_000)) as tar:
        names = tar.getnames()
    assert any("singer_sdk/__pycache__/" in n for n in names), "stored with its bytecode"

    shutil.rmtree(ws)  # a fresh container
    fresh = runner(*elt, **with_cache)
    report = ran(fresh)
    assert actions(report) == {"tap-jsonl": "restored", "target-jsonl": "restored"}
    assert report["installed"] is False
    assert "Installing" not in fresh.stderr
    assert "restored in" in fresh.stderr
    assert list((ws / "out").glob("people-*.jsonl")), "the restored environments run"

    tap_entry = next(
        p
        for p in (cache / "v1" / "entries").glob("*.json")
        if json.loads(p.read_text())["plugin"] == "extractors/tap-jsonl"
    )
    archive = tap_entry.with_suffix(".tar")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    shutil.rmtree(ws)
    repaired = runner(*elt, **with_cache)
    report = ran(repaired)
    assert actions(report) == {"tap-jsonl": "installed", "target-jsonl": "restored"}
    assert "is corrupt (its SHA-256 does not match its manifest)" in repaired.stderr
    assert [p["cache"] for p in report["plugins"] if p["name"] == "tap-jsonl"] == ["stored"]
    assert list((ws / "out").glob("people-*.jsonl"))


@LOCAL
def test_a_meltano_command_as_the_containers_arguments(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """`docker run IMAGE meltano ...` is `meltano-forge meltano ...` (the image's entry
    point), which does what `meltano-forge run -- meltano ...` does."""
    seed_project(env)
    runner = Runner(env, tmp_path, no_git)
    direct = runner("meltano", "--version", MELTANO_FORGE_INSTALL="auto")
    assert direct.returncode == 0, direct.stderr
    assert "meltano, version" in direct.stdout
    assert "on development @" in direct.stdout
    assert "installing plugins: none needed (no plugin has a pip_url)" in direct.stderr
    config = runner("--json", "meltano", "config", "set", "example", "a_string", "from-args")
    report = json.loads(config.stdout)
    assert config.returncode == 0, config.stderr
    assert report["commit"]["paths"] == ["meltano.yml"]
    assert "a_string: from-args" in env.git("show", "development:meltano.yml")
    helped = runner("meltano", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "Usage: meltano [OPTIONS] [COMMAND]" in helped.stdout, "--help is Meltano's"


def test_our_fingerprint_is_meltanos() -> None:
    """The same arguments and interpreters, through Meltano's own function."""
    python = meltano_python()
    cases = [
        (["tap-jsonl==0.3.1"], None),
        (["b", "a", "a", "--pre"], None),
        (["git+https://github.com/a/b.git@" + "c" * 40], "/usr/bin/python3.12"),
        (["x"], python),
    ]
    script = (
        "import json, sys\n"
        "from meltano.core.venv_service import fingerprint\n"
        "print(json.dumps([fingerprint(a, p) for a, p in json.loads(sys.argv[1])]))\n"
    )
    theirs = json.loads(
        subprocess.run(
            [python, "-c", script, json.dumps(cases)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert [fingerprint(a, p, python) for a, p in cases] == theirs


def test_a_long_install_says_what_it_is_still_on(caplog: pytest.LogCaptureFixture) -> None:
    output = InstallLog(["tap-a", "target-b"])
    with caplog.at_level(logging.INFO, logger="client.install"), output.ticking(every=0.1):
        output.append("[info ] meltano Installing extractor 'tap-a'\n")
        output.append("[info ] meltano Installing loader 'target-b'\n")
        time.sleep(0.35)
        output.append("[info ] meltano Installed extractor 'tap-a'\n")
        time.sleep(0.25)
        output.append("[info ] meltano Installed loader 'target-b'\n")
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("still installing tap-a, target-b (") for line in lines), lines
    assert any(line.startswith("still installing target-b (") for line in lines), lines
    assert output.seconds["tap-a"] >= 0.3
    assert output.seconds["target-b"] > output.seconds["tap-a"]
    assert output.finished == {"tap-a", "target-b"}


@LOCAL
def test_the_report_says_when_the_command_started(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    env.seed(
        {
            "meltano.yml": (FIXTURES / "meltano-config" / "meltano.yml").read_bytes()
            + PLUGIN.encode()
        },
        branch="development",
    )
    result = Runner(env, tmp_path, no_git)(
        "--json", "run", "--", "true", MELTANO_FORGE_INSTALL="auto"
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert report["plugins"] == []
    assert report["installed"] is False
    assert 0 < report["ready_seconds"] < 60
    assert "starting the command" in result.stderr
