"""Client test fixtures: a runner that calls `meltano-forge` as a container would, with a
`git` on PATH that fails the test if it is ever called."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import TOKEN, ForgeEnv

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "meltano"
PLUGIN = """plugins:
  utilities:
  - name: example
    namespace: example
    settings:
    - name: a_string
    - name: an_integer
      kind: integer
    - name: a_number
      kind: decimal
    - name: an_object
      kind: object
    - name: an_array
      kind: array
"""
STEPS = [
    ["example", "a_string", "--", "-86.75"],
    ["example", "an_integer", "42"],
    ["example", "a_number", "3.1415"],
    ["example", "an_object", '{"foo": "bar"}'],
    ["example", "an_array", '["foo", "bar"]'],
]


def meltano_dir() -> Path:
    found = shutil.which("meltano") or str(ROOT / ".venv-meltano" / "bin" / "meltano")
    assert Path(found).exists(), "meltano is not installed: run `make install`"
    return Path(found).parent


class Runner:
    """Runs `meltano-forge` as a container would, against one ForgeEnv."""

    def __init__(self, env: ForgeEnv, tmp_path: Path, no_git: Path) -> None:
        self.env, self.tmp_path = env, tmp_path
        location = env.make_config().location
        self.base = {
            "PATH": f"{no_git}:{meltano_dir()}:{os.environ.get('PATH', '')}",
            "HOME": str(tmp_path),
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
            "MELTANO_FORGE_INSTALL": "never",
            "MELTANO_FORGE_REPO": location.web_url
            if env.kind != "local"
            else f"file://{env.repo_dir}",
            "MELTANO_FORGE_PROVIDER": env.kind.split("-")[0],
            "MELTANO_FORGE_API_URL": location.api_url if env.kind != "local" else "",
            "MELTANO_FORGE_TOKEN": TOKEN,
        }
        self.count = 0

    def environ(self, **extra: str) -> dict[str, str]:
        """The runner's environment: a fresh project folder unless one is given."""
        self.count += 1
        env = {
            **self.base,
            "MELTANO_FORGE_PROJECT_DIR": str(self.tmp_path / f"ws{self.count}"),
            **extra,
        }
        return {k: v for k, v in env.items() if v}

    def start(self, *args: str, **extra: str) -> subprocess.Popen[str]:
        """Start `meltano-forge ARGS` without waiting for it."""
        return subprocess.Popen(
            [sys.executable, "-c", "from service.entry import main; main()", *args],
            cwd=ROOT,
            env=self.environ(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run `meltano-forge ARGS` and wait."""
        return subprocess.run(
            [sys.executable, "-c", "from service.entry import main; main()", *args],
            cwd=ROOT,
            env=self.environ(**extra),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )


def seed_project(env: ForgeEnv) -> str:
    meltano_yml = (FIXTURES / "meltano-config" / "meltano.yml").read_bytes() + PLUGIN.encode()
    base = env.seed({"meltano.yml": meltano_yml, ".gitignore": b"/.meltano\n.env\n/venv\n"})
    env.forge.create_branch("development", base)
    return base
