"""The doubles run on their own (`python -m tests.forges ...`) for benchmarks and tools."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from providers.config import ForgeConfig
from providers.errors import AuthenticationFailed
from providers.registry import locate, open_forge
from tests.conftest import FAST_RETRY
from tests.forges import gitdata

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("forge", "name", "api"),
    [("github", "acme/warehouse", "/api/v3"), ("gitlab", "data/platform/warehouse", "/api/v4")],
)
def test_standalone_double_serves_every_repository(
    tmp_path: Path, forge: str, name: str, api: str
) -> None:
    gitdata.init_bare(tmp_path / f"{name}.git")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.forges",
            forge,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--repos",
            str(tmp_path),
            "--token",
            "sekret-token",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        url = match.group(1)
        config = ForgeConfig(
            locate(f"{url}/{name}", forge, url + api),
            token=SecretStr("sekret-token"),
            retry=FAST_RETRY,
        )
        forge_client = open_forge(config)
        info = forge_client.repository()
        assert info.default_branch == "main"
        assert info.empty
        forge_client.close()
        stranger = open_forge(
            ForgeConfig(config.location, token=SecretStr("wrong-token"), retry=FAST_RETRY)
        )
        with pytest.raises(AuthenticationFailed):
            stranger.branches()
        stranger.close()
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()
