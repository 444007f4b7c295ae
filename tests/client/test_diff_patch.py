"""`meltano-forge diff` is a real patch: `git apply --binary` on a checkout of the base
reproduces the workspace, whatever the workspace holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from providers.contract import FileMode
from tests.client.conftest import Runner
from tests.client.test_container_workspace import tree
from tests.conftest import ForgeEnv

BINARY = bytes(range(256)) * 8


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_the_patch_applies_with_git_and_reproduces_the_workspace(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = env.seed(
        {
            "meltano.yml": b"version: 1\nplugins: {}\n"
            + b"".join(b"line %d\n" % i for i in range(30)),
            "no-newline.txt": b"first\nlast without newline",
            "run.sh": b"#!/bin/sh\necho hi\n",
            "tool.sh": (b"#!/bin/sh\n", FileMode.EXECUTABLE),
            "link": (b"meltano.yml", FileMode.SYMLINK),
            "becomes-link.txt": b"a file for now\n",
            "data.bin": BINARY,
            "gone.txt": b"bye\n",
            "gone.bin": BINARY[::-1],
        },
        branch="development",
    )
    run = Runner(env, tmp_path, no_git)
    ws = tmp_path / "ws"
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=str(ws)).returncode == 0
    text = (ws / "meltano.yml").read_bytes().replace(b"line 15\n", b"line fifteen\n")
    (ws / "meltano.yml").write_bytes(text + b"tail")
    (ws / "no-newline.txt").write_bytes(b"first\nlast, still without newline")
    (ws / "run.sh").chmod(0o755)
    (ws / "tool.sh").write_bytes(b"#!/bin/sh\necho changed\n")
    (ws / "tool.sh").chmod(0o644)
    (ws / "link").unlink()
    os.symlink("run.sh", ws / "link")
    (ws / "becomes-link.txt").unlink()
    os.symlink("no-newline.txt", ws / "becomes-link.txt")
    (ws / "data.bin").write_bytes(BINARY.replace(b"\x00\x01", b"\xff\xfe"))
    (ws / "gone.txt").unlink()
    (ws / "gone.bin").unlink()
    (ws / "new").mkdir()
    (ws / "new" / "empty.txt").write_bytes(b"")
    (ws / "new" / "text.txt").write_bytes(b"brand new\n")
    (ws / "new" / "blob.bin").write_bytes(b"\x00" * 100 + b"tail")
    os.symlink("../meltano.yml", ws / "new" / "link")

    binary = run("diff", "--binary", MELTANO_FORGE_PROJECT_DIR=str(ws))
    assert binary.returncode == 0, binary.stderr
    assert "\\ No newline at end of file" in binary.stdout
    assert "old mode 100644\nnew mode 100755" in binary.stdout
    assert "new file mode 120000" in binary.stdout
    assert "deleted file mode 100644" in binary.stdout
    assert "GIT binary patch" in binary.stdout
    plain = run("diff", MELTANO_FORGE_PROJECT_DIR=str(ws))
    assert "Binary files a/data.bin and b/data.bin differ" in plain.stdout
    assert "Binary files /dev/null and b/new/blob.bin differ" in plain.stdout

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(env.repo_dir), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", base], check=True)
    (tmp_path / "changes.patch").write_text(binary.stdout)
    subprocess.run(
        ["git", "-C", str(clone), "apply", "--binary", str(tmp_path / "changes.patch")],
        check=True,
    )
    theirs = {k: v for k, v in tree(clone).items() if not k.startswith(".git/")}
    assert theirs == tree(ws)
    for rel in ("run.sh", "tool.sh"):
        assert os.access(clone / rel, os.X_OK) == os.access(ws / rel, os.X_OK)

    names = run("diff", "--name-status", MELTANO_FORGE_PROJECT_DIR=str(ws)).stdout.splitlines()
    assert "T\tbecomes-link.txt" in names
    assert "D\tgone.txt" in names
    assert "A\tnew/text.txt" in names
    assert "M\trun.sh" in names
    only = run("diff", "--name-only", "new", MELTANO_FORGE_PROJECT_DIR=str(ws)).stdout.split()
    assert only == ["new/blob.bin", "new/empty.txt", "new/link", "new/text.txt"]
    stat = run("diff", "--stat", "meltano.yml", MELTANO_FORGE_PROJECT_DIR=str(ws)).stdout
    assert stat.splitlines()[0].startswith(" meltano.yml | 3 ++-")
    assert stat.splitlines()[-1] == " 1 file changed, 2 insertions(+), 1 deletion(-)"
    git_stat = subprocess.run(
        ["git", "-C", str(clone), "diff", "--stat", base, "--", "meltano.yml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert git_stat.splitlines()[-1] == stat.splitlines()[-1]


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_names_in_the_patch_are_quoted_as_git_quotes_them(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """A name holding a newline, an escape sequence, a quote or non-ASCII bytes is written
    as git writes it (`"a/x\\ny"`), so it forges no patch line and steers no terminal, and
    `git apply` recreates the very same names."""
    base = env.seed({"meltano.yml": b"version: 1\n"}, branch="development")
    run = Runner(env, tmp_path, no_git)
    ws = tmp_path / "ws"
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=str(ws)).returncode == 0
    names = [
        "x\n+++ b=meltano.yml",
        "\x1b]0;owned\x07.txt",
        'quote"back\\slash',
        "café.txt",
        "has space.txt",
    ]
    for name in names:
        (ws / name).write_bytes(b"hello\n")
    ours = run("diff", MELTANO_FORGE_PROJECT_DIR=str(ws))
    assert ours.returncode == 0, ours.stderr
    assert "\x1b" not in ours.stdout
    assert '+++ "b/x\\n+++ b=meltano.yml"' in ours.stdout

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(env.repo_dir), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", base], check=True)
    (tmp_path / "changes.patch").write_text(ours.stdout)
    subprocess.run(["git", "-C", str(clone), "apply", str(tmp_path / "changes.patch")], check=True)
    for name in names:
        assert (clone / name).read_bytes() == b"hello\n"
    subprocess.run(["git", "-C", str(clone), "add", "-N", "."], check=True)
    theirs = subprocess.run(
        ["git", "-C", str(clone), "diff"], capture_output=True, text=True, check=True
    ).stdout
    header = [line for line in theirs.splitlines() if line.startswith(("diff --git", "+++"))]
    assert header == [
        line for line in ours.stdout.splitlines() if line.startswith(("diff --git", "+++"))
    ]
