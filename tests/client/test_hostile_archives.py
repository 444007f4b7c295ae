"""Hostile or broken archives are refused with exit code 7 and leave no files behind."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from providers.contract import FileMode
from service.entry import main
from tests.conftest import TOKEN, ForgeEnv
from tests.forges.server import Fault


def tarball(members: list[tuple[tarfile.TarInfo, bytes | None]], sha: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": sha}
    ) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(
    name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


HOSTILE = {
    "dotdot": [member("top/meltano.yml"), member("top/../../escaped.txt")],
    "absolute": [member("top/meltano.yml"), member("/tmp/absolute.txt")],
    "escaping-symlink": [
        member("top/meltano.yml"),
        member("top/link", kind=tarfile.SYMTYPE, link="../../../etc/passwd"),
    ],
    "escaping-hardlink": [
        member("top/meltano.yml"),
        member("top/hard", kind=tarfile.LNKTYPE, link="/etc/passwd"),
    ],
    "device": [member("top/meltano.yml"), member("top/dev", kind=tarfile.CHRTYPE)],
    "oversized": [
        member("top/meltano.yml"),
        *(member(f"top/big{i}", b"z" * 4000) for i in range(4)),
    ],
}


REASONS = {
    "dotdot": "'..' component",
    "absolute": "absolute",
    "escaping-symlink": "points outside",
    "escaping-hardlink": "hard link",
    "device": "device",
    "oversized": "more than 10,000 bytes",
    "truncated": "truncated",
}


def pull(env: ForgeEnv, folder: Path, **extra: str) -> tuple[int, str]:
    location = env.make_config().location
    environ = {
        "MELTANO_FORGE_REPO": location.web_url,
        "MELTANO_FORGE_PROVIDER": env.kind,
        "MELTANO_FORGE_API_URL": location.api_url,
        "MELTANO_FORGE_TOKEN": TOKEN,
        "MELTANO_FORGE_PROJECT_DIR": str(folder),
        "MELTANO_FORGE_BRANCH": "main",
        "MELTANO_FORGE_MAX_ARCHIVE_BYTES": "10000",
        **extra,
    }
    result = CliRunner().invoke(main, ["pull"], env=environ)
    return result.exit_code, result.output


def archive_fault(env: ForgeEnv, body: bytes) -> Fault:
    path = r"^/_codeload/" if env.kind == "github" else r"/repository/archive"
    return Fault(method="GET", path=path, status=200, raw=body)


@pytest.mark.parametrize("env", ["github", "gitlab"], indirect=True)
@pytest.mark.parametrize("case", [*HOSTILE, "truncated"])
def test_hostile_archive_is_refused_and_nothing_is_written(
    env: ForgeEnv, tmp_path: Path, case: str
) -> None:
    assert env.double is not None
    sha = env.seed({"meltano.yml": b"version: 1\n"})
    if case == "truncated":
        whole = tarball(
            [member("top/meltano.yml", b"y" * 3000), member("top/b.txt", b"q" * 3000)], sha
        )
        body = whole[: len(whole) // 2]
    else:
        body = tarball(HOSTILE[case], sha)
    env.double.inject(archive_fault(env, body))
    folder = tmp_path / "project"
    code, output = pull(env, folder)
    assert code == 7, output
    assert REASONS[case] in output
    assert not folder.exists() or not any(folder.iterdir())
    assert [p.name for p in tmp_path.iterdir() if p.name != "project"] == [], (
        "no staging folder left behind"
    )
    assert not (tmp_path.parent / "escaped.txt").exists()


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_the_same_project_materializes_when_the_archive_is_honest(
    env: ForgeEnv, tmp_path: Path
) -> None:
    env.seed({"meltano.yml": b"version: 1\n", "bin/run.sh": (b"#!/bin/sh\n", FileMode.EXECUTABLE)})
    folder = tmp_path / "project"
    code, output = pull(env, folder)
    assert code == 0, output
    assert (folder / "meltano.yml").read_bytes() == b"version: 1\n"
    assert (folder / "bin" / "run.sh").stat().st_mode & 0o111
    assert (folder / ".meltano-forge" / "state.json").exists()


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_a_symlink_escaping_the_project_in_the_repository_itself_is_refused(
    env: ForgeEnv, tmp_path: Path
) -> None:
    env.seed(
        {"meltano.yml": b"version: 1\n", "evil": (b"../../../../etc/passwd", FileMode.SYMLINK)}
    )
    folder = tmp_path / "project"
    result = CliRunner().invoke(
        main,
        ["pull"],
        env={
            "MELTANO_FORGE_REPO": f"file://{env.repo_dir}",
            "MELTANO_FORGE_PROJECT_DIR": str(folder),
            "MELTANO_FORGE_BRANCH": "main",
        },
    )
    assert result.exit_code == 7, result.output
    assert "points outside" in result.output
    assert not folder.exists()
