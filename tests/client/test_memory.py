"""Memory stays bounded at realistic sizes: the pulling process's peak RSS (os.wait4's
ru_maxrss, in a child process) for a project of 100,000 files, for a 1 GiB archive of
large files, and for a 1 GiB member refused by the per-file cap. No times are asserted.

Linux starts a new program's ru_maxrss at the high-water mark of the process that
exec'd it, so the pull is started by a small launcher (whose own mark is a few MB) that
waits for it: the figure is then the pull's own, not this test process's."""

from __future__ import annotations

import gzip
import io
import itertools
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import TOKEN, ForgeEnv
from tests.forges.server import Fault

ROOT = Path(__file__).resolve().parents[2]
BOUND_MB = 150
MIB = 1024**2

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("env", ["github"], indirect=True)]


def _archive(path: Path, sha: str, members: list[tuple[str, int, bytes | None]]) -> bytes:
    """A `git archive`-shaped tar.gz (pax comment, one top folder): each member's name,
    size and bytes (None: that many zeros, written a MiB at a time)."""
    with (
        gzip.GzipFile(path, "wb", compresslevel=1, mtime=0) as raw,
        tarfile.open(
            fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT, pax_headers={"comment": sha}
        ) as tar,
    ):
        for name, size, data in members:
            info = tarfile.TarInfo(f"top/{name}")
            info.size, info.mode = size, 0o644
            tar.addfile(info, io.BytesIO(data) if data is not None else _Zeros(size))
    return path.read_bytes()


class _Zeros(io.RawIOBase):
    """`size` zero bytes, never all in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def _pull(env: ForgeEnv, folder: Path, archive: bytes) -> tuple[int, float, str]:
    """`meltano-forge pull` in a child process served `archive`: exit code, peak RSS (MB)
    and stderr."""
    assert env.double is not None
    env.double.inject(Fault(method="GET", path=r"^/_codeload/", status=200, raw=archive))
    return _meltano_forge(env, folder, "pull")


def _meltano_forge(env: ForgeEnv, folder: Path, *args: str, **extra: str) -> tuple[int, float, str]:
    """`meltano-forge ARGS` in a child process: exit code, peak RSS (MB) and stderr."""
    location = env.make_config().location
    environ = {
        **os.environ,
        "MELTANO_FORGE_REPO": location.web_url,
        "MELTANO_FORGE_PROVIDER": env.kind,
        "MELTANO_FORGE_API_URL": location.api_url,
        "MELTANO_FORGE_TOKEN": TOKEN,
        "MELTANO_FORGE_PROJECT_DIR": str(folder),
        "MELTANO_FORGE_BRANCH": "main",
        **extra,
    }
    stderr = folder.parent / f"{folder.name}.stderr"
    pull = [sys.executable, "-c", "from service.entry import main; main()", *args]
    with stderr.open("wb") as err:
        launched = subprocess.run(
            [sys.executable, "-c", LAUNCHER, *pull],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=True,
        )
    code, maxrss_kib = (int(x) for x in launched.stdout.split())
    return code, maxrss_kib / 1024, stderr.read_text()


def test_a_project_of_100k_files_is_pulled_within_the_bound(env: ForgeEnv, tmp_path: Path) -> None:
    sha = env.seed({"meltano.yml": b"version: 1\n"})
    members: list[tuple[str, int, bytes | None]] = [("meltano.yml", 11, b"version: 1\n")]
    for i in range(100_000):
        data = f"select {i} as id -- model {i}\n".encode()
        members.append((f"models/m{i % 400:03d}/model_{i:06d}.sql", len(data), data))
    archive = _archive(tmp_path / "small.tar.gz", sha, members)
    folder = tmp_path / "project"
    code, peak, stderr = _pull(env, folder, archive)
    assert code == 0, stderr
    assert (folder / "models" / "m399" / "model_099999.sql").read_bytes().startswith(b"select")
    assert sum(1 for _ in (folder / "models" / "m000").iterdir()) == 250
    assert peak <= BOUND_MB, f"peak RSS {peak:.0f} MB for 100,000 files"


def test_a_1_gib_archive_of_large_files_is_pulled_within_the_bound(
    env: ForgeEnv, tmp_path: Path
) -> None:
    sha = env.seed({"meltano.yml": b"version: 1\n"})
    members: list[tuple[str, int, bytes | None]] = [("meltano.yml", 11, b"version: 1\n")]
    members += [(f"data/zeros_{i}.bin", 100 * MIB, None) for i in range(10)]
    archive = _archive(tmp_path / "bomb.tar.gz", sha, members)
    assert len(archive) < 20 * MIB, "a bomb: 1 GiB in a few MiB"
    folder = tmp_path / "project"
    code, peak, stderr = _pull(env, folder, archive)
    assert code == 0, stderr
    assert [(folder / "data" / f"zeros_{i}.bin").stat().st_size for i in range(10)] == [
        100 * MIB
    ] * 10
    assert peak <= BOUND_MB, f"peak RSS {peak:.0f} MB for 10 x 100 MiB"


def test_a_1_gib_member_is_refused_within_the_bound(env: ForgeEnv, tmp_path: Path) -> None:
    sha = env.seed({"meltano.yml": b"version: 1\n"})
    members: list[tuple[str, int, bytes | None]] = [("meltano.yml", 11, b"version: 1\n")]
    members.append(("data/huge.bin", 1024 * MIB, None))
    archive = _archive(tmp_path / "huge.tar.gz", sha, members)
    folder = tmp_path / "project"
    code, peak, stderr = _pull(env, folder, archive)
    assert code == 7, stderr
    assert "over the limit" in stderr
    assert not folder.exists() or not any(folder.iterdir())
    assert peak <= BOUND_MB, f"peak RSS {peak:.0f} MB refusing a 1 GiB member"


def test_an_alias_bomb_in_meltano_yml_is_read_within_the_bound(
    env: ForgeEnv, tmp_path: Path
) -> None:
    """545 bytes whose `include_paths` expand to 9^9 patterns: the install key, the install
    and the read-only check read it without expanding it."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in itertools.pairwise("abcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    bomb = ("\n".join([*lines, "include_paths: *i"]) + "\n").encode()
    assert len(bomb) < 600
    env.seed({"meltano.yml": bomb})
    folder = tmp_path / "project"
    code, peak, stderr = _meltano_forge(
        env,
        folder,
        "run",
        "--",
        "true",
        MELTANO_FORGE_INSTALL="auto",
        MELTANO_FORGE_MELTANO_BIN="true",
    )
    assert code == 0, stderr
    assert "its aliases expand to more than 200,000 values" in stderr
    assert peak <= BOUND_MB, f"peak RSS {peak:.0f} MB reading a 545-byte alias bomb"
