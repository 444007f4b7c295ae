"""Nothing escapes, nothing leaks, and no commit can break a branch: regression tests for
defects found by attacking the CLI as an outsider would."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from providers.contract import FileMode
from tests.client.conftest import Runner, seed_project
from tests.conftest import ForgeEnv
from tests.forges.server import Fault

LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)


def chain_archive(sha: str, order: list[str]) -> bytes:
    """The reported escape: `d/l -> ..` makes `d/e/esc -> ../l/..` leave the project."""
    links = {"d/l": "..", "d/e/esc": "../l/.."}
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": sha}
    ) as tar:
        info = tarfile.TarInfo("top/meltano.yml")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"x: "))
        for path in order:
            link = tarfile.TarInfo(f"top/{path}")
            link.type, link.linkname = tarfile.SYMTYPE, links[path]
            tar.addfile(link)
    return buffer.getvalue()


@pytest.mark.parametrize("env", ["github"], indirect=True)
@pytest.mark.parametrize("order", [["d/l", "d/e/esc"], ["d/e/esc", "d/l"]])
def test_symlink_chains_that_leave_the_project_are_refused(
    env: ForgeEnv, tmp_path: Path, no_git: Path, order: list[str]
) -> None:
    assert env.double is not None
    sha = seed_project(env)
    env.double.inject(
        Fault(method="GET", path=r"^/_codeload/", status=200, raw=chain_archive(sha, order))
    )
    folder = tmp_path / "ws"
    result = Runner(env, tmp_path, no_git)("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert result.returncode == 7, result.stdout + result.stderr
    assert "The symlink d/e/esc points outside the project" in result.stderr
    assert not (folder / "d").exists()


@LOCAL
def test_a_repository_holding_a_link_chain_is_refused_too(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    env.seed(
        {
            "meltano.yml": b"x: 1\n",
            "d/l": (b"..", FileMode.SYMLINK),
            "d/e/esc": (b"../l/..", FileMode.SYMLINK),
        },
        branch="development",
    )
    folder = tmp_path / "ws"
    result = Runner(env, tmp_path, no_git)("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert result.returncode == 7, result.stderr
    assert "d/e/esc points outside" in result.stderr


@pytest.mark.parametrize("env", ["github", "gitlab"], indirect=True)
def test_a_token_echoed_by_the_forge_never_reaches_any_output(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    assert env.double is not None
    seed_project(env)
    secret = "echoed-secret-token-0006"
    env.double.add_token(secret, "read")
    run = Runner(env, tmp_path, no_git)
    run.base["MELTANO_FORGE_TOKEN"] = secret
    folder = str(tmp_path / "ws")
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=folder).returncode == 0
    with (Path(folder) / "meltano.yml").open("a") as meltano_yml:  # a change the check passes
        meltano_yml.write("# changed\n")
    env.double.echo_token = True
    try:
        outputs = [
            run("commit", "-m", "x", MELTANO_FORGE_PROJECT_DIR=folder),
            run("--json", "commit", "-m", "x", MELTANO_FORGE_PROJECT_DIR=folder),
            run("commit", "--verbose", "-m", "x", MELTANO_FORGE_PROJECT_DIR=folder),
        ]
    finally:
        env.double.echo_token = False
    for result in outputs:
        assert result.returncode == 5, result.stdout + result.stderr
        assert secret not in result.stdout + result.stderr
        assert "***" in result.stdout + result.stderr, "the echo was there, and masked"
    assert "Traceback" in outputs[2].stderr, "--verbose shows the (masked) traceback"
    assert json.loads(outputs[1].stdout)["exit_code"] == 5


@LOCAL
def test_the_command_never_sees_meltano_forge_settings_or_secrets(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed_project(env)
    token_file = tmp_path / "token"
    token_file.write_text("file-token-value-0007\n")
    run = Runner(env, tmp_path, no_git)
    result = run(
        "run",
        "--",
        "sh",
        "-c",
        'env > "$HOME/child-env.txt"',
        MELTANO_FORGE_TOKEN_FILE=str(token_file),
    )
    assert result.returncode == 0, result.stderr
    seen = (tmp_path / "child-env.txt").read_text()
    assert "MELTANO_FORGE_" not in seen
    assert "file-token-value-0007" not in seen
    assert run.base["MELTANO_FORGE_TOKEN"] not in seen
    assert "MELTANO_SEND_ANONYMOUS_USAGE_STATS=false" in seen, "the rest is passed on"


@LOCAL
def test_commit_refuses_what_a_pull_would_refuse(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder)).returncode == 0
    (folder / "d" / "e").mkdir(parents=True)
    os.symlink("..", folder / "d" / "l")
    os.symlink("../l/..", folder / "d" / "e" / "esc")
    chain = run("commit", "-m", "links", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert chain.returncode == 7, chain.stdout + chain.stderr
    assert "d/e/esc points outside the project" in chain.stderr
    os.unlink(folder / "d" / "e" / "esc")
    os.unlink(folder / "d" / "l")
    os.symlink("/etc/passwd", folder / "passwd")
    absolute = run("commit", "-m", "abs", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert absolute.returncode == 7
    os.unlink(folder / "passwd")
    with open(folder / "big.bin", "wb") as handle:  # sparse: 101 MiB of zeros
        handle.truncate(101 * 1024**2)
    big = run("commit", "-m", "big", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert big.returncode == 7
    assert "big.bin is 105,906,176 bytes, over the limit of 104,857,600" in big.stderr
    assert env.head("development") == base, "nothing reached the branch"
    os.unlink(folder / "big.bin")
    fresh = run("pull", MELTANO_FORGE_PROJECT_DIR=str(tmp_path / "fresh"))
    assert fresh.returncode == 0, "the branch still pulls"


@LOCAL
def test_a_tracked_file_under_a_folder_replaced_by_a_link_is_deleted(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    env.seed({"transform/m.sql": b"select 1\n"}, branch="development", parent=base)
    run = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder)).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "m.sql").write_text("select 1\n")
    (folder / "transform" / "m.sql").unlink()
    (folder / "transform").rmdir()
    os.symlink(elsewhere, folder / "transform")
    status = run("status", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert "deleted   transform/m.sql" in status.stdout
    assert "added     transform" in status.stdout
