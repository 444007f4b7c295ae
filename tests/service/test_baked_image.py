"""`examples/Dockerfile.baked` built for real with podman (on the project's image, itself
built as `test_image.py` builds it) and run against a forge double: a container pulls the
project into a fresh volume and runs the command with no install when the plugins match,
and installs only the plugin whose definition changed since the build."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.client.test_plugin_envs import meltano_yml
from tests.client.test_plugins_without_git import REGISTRY
from tests.conftest import TOKEN, ForgeEnv
from tests.service import image

ROOT = Path(__file__).resolve().parents[2]
UID = 10001
PROJECT = "/home/meltano/project"
BAKED_TAG = "localhost/meltano-forge-baked:test"
DATA = b'{"id": 1, "name": "ada"}\n{"id": 2, "name": "grace"}\n'


def build_baked(base: str, workdir: Path) -> str:
    """The example Dockerfile on a context holding what a project's folder holds."""
    context = workdir / "baked-context"
    (context / "plugins").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "Dockerfile.baked", context / "Dockerfile")
    (context / "meltano.yml").write_bytes(meltano_yml())
    (context / "plugins" / "README").write_text("lock files live here\n")
    mounts = [
        arg
        for path in image.HOST_FILES
        if Path(path).exists()
        for arg in ("-v", f"{path}:{path}:ro")
    ]
    with image.locked():
        image._run(
            [
                "podman",
                *image.STORAGE,
                "build",
                "--isolation=chroot",
                "--pull=never",
                "--layers",
                *mounts,
                "--build-arg",
                f"BASE={base}",
                *[f"--build-arg={k}={v}" for k, v in REGISTRY.items()],
                "-t",
                BAKED_TAG,
                "-f",
                str(context / "Dockerfile"),
                str(context),
            ],
            timeout=image.BUILD_TIMEOUT,
        )
    return BAKED_TAG


def fresh_volume(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    os.chown(folder, UID, UID)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_a_baked_image_runs_with_no_install_and_installs_only_what_changed(
    env: ForgeEnv, tmp_path: Path
) -> None:
    reason = image.unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the image: {reason}")
        pytest.skip(reason)
    base = image.build_image(ROOT, tmp_path)
    baked = build_baked(base.tag, tmp_path)
    config = image.image_config(baked)
    assert config["Entrypoint"] == ["meltano-forge"]
    assert config["WorkingDir"] == PROJECT

    head = env.seed(
        {
            "meltano.yml": meltano_yml(),
            "data/people.jsonl": DATA,
            "out/.keep": b"",
            ".gitignore": b"/.meltano\n/out/*.jsonl\n.env\n",
        },
        branch="development",
    )
    location = env.make_config().location
    runner = {
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
        "MELTANO_FORGE_REPO": location.web_url,
        "MELTANO_FORGE_PROVIDER": "github",
        "MELTANO_FORGE_API_URL": location.api_url,
        "MELTANO_FORGE_TOKEN": TOKEN,
        **REGISTRY,  # the changed plugin is installed at run time
    }
    # The container's arguments are the Meltano command (the image's entry point is
    # meltano-forge), as `docker run IMAGE meltano run tap target` gives them.
    elt = ["meltano-forge", "--json", "meltano", "run", "tap-jsonl", "target-jsonl"]
    # This machine reaches the index through a TLS-intercepting proxy: the installs inside
    # the container trust its CA as the host does (the build mounts them the same way).
    certs = {"/etc/ssl/certs": "/etc/ssl/certs:ro"} if REGISTRY else {}
    with image.Container(baked) as box:
        volume = fresh_volume(tmp_path, "volume1")
        done = box.run(elt, env=runner, volumes={str(volume): PROJECT, **certs}, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        report = json.loads(done.stdout)
        assert {p["name"]: p["action"] for p in report["plugins"]} == {
            "tap-jsonl": "reused",
            "target-jsonl": "reused",
        }
        assert report["installed"] is False
        assert "Installing" not in done.stderr, "the baked environments are used as they are"
        assert list(volume.glob("out/people-*.jsonl")), "the command ran"
        assert not (volume / ".meltano" / "extractors").exists()
        assert env.head("development") == head

        env.seed(
            {"meltano.yml": meltano_yml(target="target-jsonl>=0.1.4,<0.2")},
            branch="development",
            parent=head,
        )
        volume = fresh_volume(tmp_path, "volume2")
        changed = box.run(elt, env=runner, volumes={str(volume): PROJECT, **certs}, timeout=900)
        assert changed.returncode == 0, changed.stdout[-3000:] + changed.stderr[-5000:]
        report = json.loads(changed.stdout)
        assert {p["name"]: p["action"] for p in report["plugins"]} == {
            "tap-jsonl": "reused",
            "target-jsonl": "installed",
        }
        assert "Installing loader 'target-jsonl'" in changed.stderr
        assert "Installing extractor" not in changed.stderr
        assert list(volume.glob("out/people-*.jsonl"))
