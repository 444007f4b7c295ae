"""The runner's first home is a container whose project folder is a volume and its cwd:
the folder is updated in place, interrupted updates are finished, rescued changes leave
the workspace, and a change that cannot be pushed is never lost."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.conftest import ROOT, Runner, seed_project
from tests.conftest import ForgeEnv

LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` but meltano-forge's own state, with its bytes."""
    out = {}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".meltano-forge") or path.is_dir():
            continue
        out[rel] = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    return out


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs mount point (CI runs as root); skipped where mounting is refused."""
    mount = tmp_path / "volume"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,mode=2775", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@LOCAL
def test_a_tmpfs_volume_that_is_the_cwd_stays_mounted_and_valid(
    env: ForgeEnv, tmpfs: Path, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    before = tmpfs.stat()
    run = Runner(env, tmp_path, no_git)
    shell = subprocess.Popen(
        ["sh", "-c", "while [ ! -e ../stop ]; do sleep 0.05; done; ls -a . && pwd -P"],
        cwd=tmpfs,
        stdout=subprocess.PIPE,
        text=True,
    )
    pulled = run("pull", MELTANO_FORGE_PROJECT_DIR=str(tmpfs))
    assert pulled.returncode == 0, pulled.stderr
    meltano_yml = env.git_bytes("show", f"{base}:meltano.yml")
    env.seed({"upstream.txt": b"new\n"}, branch="development", parent=base)
    again = run("pull", MELTANO_FORGE_PROJECT_DIR=str(tmpfs))
    assert again.returncode == 0, again.stderr
    assert "updated 1 file" in again.stdout
    done = run(
        "run", "--", "meltano", "environment", "add", "ci", MELTANO_FORGE_PROJECT_DIR=str(tmpfs)
    )
    assert done.returncode == 0, done.stderr
    assert "auto-committed meltano.yml" in done.stdout
    (tmp_path / "stop").touch()
    listing, _ = shell.communicate(timeout=30)
    assert shell.returncode == 0
    assert "meltano.yml" in listing, "the shell's cwd is valid"
    assert "upstream.txt" in listing
    assert listing.strip().splitlines()[-1] == str(tmpfs)
    assert os.path.ismount(tmpfs)
    after = tmpfs.stat()
    assert (after.st_ino, after.st_dev, after.st_mode, after.st_uid) == (
        before.st_ino,
        before.st_dev,
        before.st_mode,
        before.st_uid,
    )
    assert (tmpfs / "meltano.yml").read_bytes() != meltano_yml
    assert "- name: ci" in env.git("show", "development:meltano.yml")


@LOCAL
def test_pull_keeps_the_folder_its_mode_and_what_it_does_not_track(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    folder = tmp_path / "volume"
    folder.mkdir()
    folder.chmod(0o2770)
    (folder / ".meltano").mkdir()
    (folder / ".meltano" / "meltano.db").write_text("installed plugins live here")
    (folder / "scratch.txt").write_text("a user's notes")
    before = folder.stat()
    run = Runner(env, tmp_path, no_git)
    first = run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert first.returncode == 0, first.stderr
    env.seed(
        {"meltano.yml": b"version: 2\n", "transform/m.sql": b"select 1\n"},
        branch="development",
        parent=base,
    )
    second = run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert second.returncode == 0, second.stderr
    after = folder.stat()
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert (folder / ".meltano" / "meltano.db").read_text() == "installed plugins live here"
    assert (folder / "scratch.txt").read_text() == "a user's notes"
    assert (folder / "meltano.yml").read_bytes() == b"version: 2\n"
    assert (folder / "transform" / "m.sql").read_bytes() == b"select 1\n"
    status = run("status", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert status.stdout.splitlines()[1:] == ["added     scratch.txt"]


@LOCAL
def test_untracked_files_in_the_way_refuse_the_pull_and_change_nothing(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed_project(env)
    folder = tmp_path / "volume"
    folder.mkdir()
    (folder / "meltano.yml").write_text("someone else's project\n")
    run = Runner(env, tmp_path, no_git)
    refused = run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert refused.returncode == 3
    assert "meltano.yml already exists here but not in the workspace" in refused.stderr
    assert (folder / "meltano.yml").read_text() == "someone else's project\n"
    assert sorted(p.name for p in folder.iterdir()) == ["meltano.yml"]


@LOCAL
def test_a_file_meltano_forge_wrote_is_removed_only_while_unchanged(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    head = env.seed({"gone.txt": b"x\n", "kept.txt": b"y\n"}, branch="development", parent=base)
    folder = tmp_path / "ws"
    run = Runner(env, tmp_path, no_git)
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder)).returncode == 0
    (folder / "kept.txt").write_text("edited here\n")
    later = env.remove(["gone.txt", "kept.txt"], branch="development", parent=head)
    refused = run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert refused.returncode == 3, "an edited file the branch deleted is a conflict"
    assert (folder / "gone.txt").exists()
    assert (folder / "kept.txt").exists()
    (folder / "kept.txt").write_text("y\n")
    done = run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert done.returncode == 0, done.stderr
    assert not (folder / "gone.txt").exists()
    assert not (folder / "kept.txt").exists()
    assert env.head("development") == later


KILLER = """
import os, signal, sys
point, after = sys.argv[1], int(sys.argv[2])
count = 0

def hit():
    global count
    count += 1
    if count >= after:
        os.kill(os.getpid(), signal.SIGKILL)

if point == "staging":
    import client.staging as staging
    write = staging._write
    def patched(*args, **kwargs):
        hit()
        return write(*args, **kwargs)
    staging._write = patched
elif point == "rename":
    replace = os.replace
    def patched(source, target, *args, **kwargs):
        done = replace(source, target, *args, **kwargs)
        if "/.meltano-forge/staging/" in str(source):
            hit()
        return done
    os.replace = patched
elif point == "manifest":
    import client.manifest as manifest
    save = manifest.Manifest.save
    def patched(self, root):
        if self.pending is None:
            hit()
        return save(self, root)
    manifest.Manifest.save = patched
from service.entry import main
sys.argv = ["meltano-forge", "pull"]
main()
"""


@pytest.mark.slow
@LOCAL
@pytest.mark.parametrize(
    ("point", "after"),
    [("staging", 500), ("rename", 1), ("rename", 700), ("rename", 1100), ("manifest", 1)],
)
def test_a_killed_pull_is_finished_by_the_next_command(
    env: ForgeEnv, tmp_path: Path, no_git: Path, point: str, after: int
) -> None:
    files: dict[str, bytes | tuple[bytes, object]] = {
        f"models/m{i:04}.sql": f"select {i}\n".encode() for i in range(2000)
    }
    files["meltano.yml"] = b"version: 1\n"
    base = env.seed(files, branch="development")  # type: ignore[arg-type]
    run = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder)).returncode == 0
    changed: dict[str, bytes | tuple[bytes, object]] = {
        f"models/m{i:04}.sql": f"select {i} -- v2\n".encode() for i in range(0, 2000, 2)
    }
    changed |= {f"new/n{i:03}.sql": b"select 'new'\n" for i in range(100)}
    head = env.seed(changed, branch="development", parent=base)  # type: ignore[arg-type]
    head = env.remove([f"models/m{i:04}.sql" for i in range(1, 200, 2)], "development", head)
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, point, str(after)],
        cwd=ROOT,
        env=run.environ(MELTANO_FORGE_PROJECT_DIR=str(folder)),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    status = run("status", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert status.returncode == 0, status.stderr
    finished = run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert finished.returncode == 0, finished.stderr
    status = run("--json", "status", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert '"changes": []' in status.stdout, status.stdout
    fresh = tmp_path / "fresh"
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=str(fresh)).returncode == 0
    assert tree(folder) == tree(fresh)
    assert len(tree(fresh)) == 2001
    assert not list((folder / ".meltano-forge").glob("staging/*")), "no staging left behind"
    assert env.head("development") == head


@LOCAL
def test_a_rescued_change_leaves_the_workspace_and_is_rescued_once(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    folder = str(tmp_path / "ws")
    failed = run(
        "run",
        "--",
        "sh",
        "-c",
        "echo '# wip' >> meltano.yml; touch new.sql; exit 3",
        MELTANO_FORGE_PROJECT_DIR=folder,
    )
    assert failed.returncode == 3
    rescues = env.git("branch", "--list", "development-rescue-*").split()
    assert len(rescues) == 1
    assert f"saved on '{rescues[0]}'" in failed.stdout
    assert f"meltano-forge checkout {rescues[0]}" in failed.stdout
    assert env.git("show", f"{rescues[0]}:meltano.yml").endswith("# wip\n")
    assert not (Path(folder) / "new.sql").exists(), "the workspace is back at the head"
    assert not (Path(folder) / "meltano.yml").read_text().endswith("# wip\n")
    for command in (["meltano", "environment", "list"], ["true"]):
        again = run("run", "--", *command, MELTANO_FORGE_PROJECT_DIR=folder)
        assert again.returncode == 0, again.stderr
        assert "auto-committed" not in again.stdout
    assert env.git("branch", "--list", "development-rescue-*").split() == rescues
    assert env.head("development") == base
    status = run("status", MELTANO_FORGE_PROJECT_DIR=folder)
    assert f"rescued to {rescues[0]} (command failed): meltano.yml, new.sql" in status.stdout


@LOCAL
def test_a_conflict_side_branch_leaves_the_workspace_too(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    for folder in (a, b):
        assert run("pull", MELTANO_FORGE_PROJECT_DIR=folder).returncode == 0
    (Path(a) / ".gitignore").write_text("mine\n")
    (Path(b) / ".gitignore").write_text("theirs\n")
    assert run("commit", MELTANO_FORGE_PROJECT_DIR=a).returncode == 0
    lost = run("commit", MELTANO_FORGE_PROJECT_DIR=b)
    assert lost.returncode == 3, lost.stdout + lost.stderr
    assert "workspace is back at the head" in lost.stdout
    after = run("run", "--", "true", MELTANO_FORGE_PROJECT_DIR=b)
    assert after.returncode == 0, after.stderr
    assert "auto-committed" not in after.stdout
    assert (Path(b) / ".gitignore").read_text() == "mine\n", "pulled, not re-committed"


@LOCAL
def test_a_corrupt_repository_is_refused_before_any_branch_is_made(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base = env.seed({"meltano.yml": b"version: 1\n", "data/big.csv": b"a,b\n1,2\n"})
    blob = env.git("rev-parse", f"{base}:data/big.csv").strip()
    (env.repo_dir / "objects" / blob[:2] / blob[2:]).unlink()
    run = Runner(env, tmp_path, no_git)
    result = run("run", "--", "true")
    assert result.returncode == 6, result.stderr
    assert f"is corrupt: object {blob} (data/big.csv) is missing" in result.stderr
    assert "Traceback" not in result.stderr
    assert env.head("development") is None, "no branch was created"


def read_only_runner(env: ForgeEnv, tmp_path: Path, no_git: Path, token: str) -> Runner:
    run = Runner(env, tmp_path, no_git)
    run.base["MELTANO_FORGE_TOKEN"] = token
    return run


def assert_bundled(result: subprocess.CompletedProcess[str], folder: Path, base: str) -> Path:
    assert result.returncode == 8, result.stdout + result.stderr
    assert "The token may read the repository but not push" in result.stderr
    assert "could not be pushed" in result.stdout
    bundle = next((folder / ".meltano-forge" / "rescue").iterdir())
    assert (bundle / "files" / "meltano.yml").read_text().endswith("# made anyway\n")
    patch = (bundle / "changes.patch").read_text()
    assert patch.startswith(f"From {base} ")
    assert "+# made anyway" in patch
    assert (folder / "meltano.yml").read_text().endswith("# made anyway\n"), "nothing lost"
    return bundle


@pytest.mark.parametrize("env", ["github", "gitlab"], indirect=True)
def test_a_token_that_cannot_push_runs_read_only_and_bundles_the_change(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    assert env.double is not None
    base = seed_project(env)
    env.double.add_token("reader-token-0005", "read")
    run = read_only_runner(env, tmp_path, no_git, "reader-token-0005")
    folder = tmp_path / "ws"
    result = run(
        "run",
        "--",
        "sh",
        "-c",
        "echo \"$MELTANO_PROJECT_READONLY\" > ro; echo '# made anyway' >> meltano.yml",
        MELTANO_FORGE_PROJECT_DIR=str(folder),
    )
    assert (folder / "ro").read_text() == "true\n", "Meltano was told the project is read-only"
    bundle = assert_bundled(result, folder, base)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(env.repo_dir), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", base], check=True)
    subprocess.run(
        ["git", "-C", str(clone), "apply", "--binary", str(bundle / "changes.patch")], check=True
    )
    assert (clone / "meltano.yml").read_text().endswith("# made anyway\n")
    assert env.head("development") == base


@pytest.mark.parametrize("env", ["github", "gitlab"], indirect=True)
def test_a_branch_the_forge_protects_is_read_only_without_any_setting(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    assert env.double is not None
    base = seed_project(env)
    env.double.protected[env.double_name] = {"development"}  # type: ignore[attr-defined]
    try:
        run = Runner(env, tmp_path, no_git)
        result = run(
            "run", "--", "meltano", "environment", "add", "x", MELTANO_FORGE_PROTECTED_BRANCHES=""
        )
        assert result.returncode == 1, result.stderr
        assert "The forge protects the branch 'development' from this token" in result.stderr
        assert "deployed as read-only" in result.stderr + result.stdout
        assert env.head("development") == base
    finally:
        env.double.protected.clear()  # type: ignore[attr-defined]


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_permission_lost_mid_run_bundles_the_change(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    assert env.double is not None
    base = seed_project(env)
    run = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    go = tmp_path / "go"
    started = tmp_path / "started"
    process = run.start(
        "run",
        "--",
        "sh",
        "-c",
        f"touch {started}; while [ ! -e {go} ]; do sleep 0.05; done; "
        "echo '# made anyway' >> meltano.yml",
        MELTANO_FORGE_PROJECT_DIR=str(folder),
    )
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    token = run.base["MELTANO_FORGE_TOKEN"]
    env.double.roles[token] = "read"
    try:
        go.touch()
        out, err = process.communicate(timeout=120)
    finally:
        env.double.roles[token] = "write"
    assert process.returncode == 8, out + err
    bundle = next((folder / ".meltano-forge" / "rescue").iterdir())
    assert "+# made anyway" in (bundle / "changes.patch").read_text()
    assert "saved in" in out
    assert env.head("development") == base
    shutil.rmtree(bundle)


@LOCAL
def test_a_failed_run_that_leaves_an_escaping_link_makes_no_rescue_branch(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """A rescue screens its change set as a commit does (one first half, in `sync`): a link
    out of the project is refused before any side branch is made, not after."""
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    folder = str(tmp_path / "ws")
    committed = run(
        "run", "--", "sh", "-c", "ln -s ../../outside escape", MELTANO_FORGE_PROJECT_DIR=folder
    )
    failed = run(
        "run",
        "--",
        "sh",
        "-c",
        "ln -s ../../outside escape; exit 3",
        MELTANO_FORGE_PROJECT_DIR=str(tmp_path / "ws2"),
    )
    assert failed.returncode == committed.returncode == 7, failed.stderr
    assert "escape" in failed.stderr
    assert env.git("branch", "--list", "development-rescue-*").split() == []
