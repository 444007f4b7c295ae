"""The local forge reads files through libgit2 (`gitobjects.ObjectDatabase`): on a packed
repository with delta chains, on loose objects and on both at once, what it serves is what
git itself reads (git, read-only, is the referee), and a corrupt object is refused, never
served."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest
from dulwich.object_store import MemoryObjectStore
from dulwich.objects import ObjectID
from dulwich.pack import write_pack
from dulwich.repo import Repo

from providers import gitobjects
from providers.config import ForgeConfig
from providers.contract import FileChange, FileMode
from providers.errors import Unavailable
from providers.local import LocalForge
from providers.registry import locate
from tests.conftest import read_only_git
from tests.forges import gitdata

AUTHOR = ("test", "test@localhost")
SHARED = b"".join(b"select %d as id, 'a line the versions share'\n" % i for i in range(300))


def _versions() -> list[dict[str, tuple[bytes, FileMode]]]:
    """Three versions of a project whose files differ by a line: a deltified pack stores
    most of them as deltas on one another."""
    rng = random.Random(17)
    seed = rng.randbytes(50_000)
    versions = []
    for v in range(3):
        files = {
            f"transform/models/m{i:03d}.sql": (SHARED + b"-- v%d m%d\n" % (v, i), FileMode.REGULAR)
            for i in range(40)
        }
        files["transform/seeds/seed.bin"] = (seed[: 40_000 + v * 3000], FileMode.REGULAR)
        files["meltano.yml"] = (b"version: 1\nproject_id: p%d\n" % v, FileMode.REGULAR)
        files["bin/run.sh"] = (b"#!/bin/sh\necho %d\n" % v, FileMode.EXECUTABLE)
        files["link"] = (b"meltano.yml", FileMode.SYMLINK)
        files["empty.txt"] = (b"", FileMode.REGULAR)
        files["ünïcødé/日本語.txt"] = f"こんにちは {v}\n".encode(), FileMode.REGULAR
        versions.append(files)
    return versions


def _packed_repository(path: Path) -> list[str]:
    """A bare repository whose three commits are in one deltified pack; their SHAs."""
    memory = MemoryObjectStore()
    parents: list[bytes] = []
    shas = []
    for v, files in enumerate(_versions()):
        edits = [
            gitobjects.TreeEdit(p, m, gitobjects.add_blob(memory, d)) for p, (d, m) in files.items()
        ]
        tree = gitobjects.apply_edits(memory, None, edits)
        commit = gitobjects.make_commit(
            memory, tree, parents, f"v{v}", AUTHOR, when=1_700_000_000 + v
        )
        parents = [commit]
        shas.append(commit.decode())
    gitdata.init_bare(path)
    repo = Repo(str(path))
    try:
        store = repo.object_store
        objects = [memory[ObjectID(o)] for o in memory]
        temporary = path / "objects" / "pack" / "tmp-pack"
        write_pack(str(temporary), objects, store.object_format, deltify=True)
        checksum = read_only_git(path, "verify-pack", str(temporary) + ".idx")  # a valid pack
        assert checksum == ""
        name = path / "objects" / "pack" / f"pack-{_pack_checksum(temporary)}"
        for suffix in (".pack", ".idx"):
            Path(str(temporary) + suffix).rename(str(name) + suffix)
        gitdata.set_head(repo, "main", None, shas[-1])
    finally:
        repo.close()
    return shas


def _pack_checksum(base: Path) -> str:
    """The pack's trailing SHA-1, which git names it by."""
    return Path(str(base) + ".pack").read_bytes()[-20:].hex()


def _git_files(repo: Path, sha: str) -> dict[str, tuple[bytes, FileMode, str, int]]:
    """path -> (bytes, mode, blob id, size), as git reads the commit."""
    files = {}
    for line in read_only_git(repo, "ls-tree", "-r", "-l", "-z", sha).split("\0"):
        if not line:
            continue
        meta, path = line.split("\t", 1)
        mode, kind, blob, size = meta.split()
        assert kind == "blob"
        data = _git_blob(repo, blob)
        files[path] = (data, FileMode.parse(int(mode, 8)), blob, int(size))
    return files


def _git_blob(repo: Path, blob: str) -> bytes:
    import subprocess

    return subprocess.run(
        ["git", "--git-dir", str(repo), "cat-file", "blob", blob], capture_output=True, check=True
    ).stdout


def _forge(repo: Path) -> LocalForge:
    return LocalForge(ForgeConfig(locate(f"file://{repo}")))


def _served(forge: LocalForge, ref: str, folder: str = "") -> dict[str, tuple[bytes, FileMode]]:
    with forge.archive(ref, folder) as snapshot:
        return {e.path: (e.read(), e.mode) for e in snapshot.entries}


def _check_against_git(forge: LocalForge, repo: Path, sha: str) -> None:
    expected = _git_files(repo, sha)
    assert _served(forge, sha) == {p: (d, m) for p, (d, m, _, _) in expected.items()}
    listing = {e.path: (e.mode, e.sha, e.size) for e in forge.list_tree(sha)}
    assert listing == {p: (m, b, s) for p, (_, m, b, s) in expected.items()}
    for path, (data, *_) in expected.items():
        assert forge.read_file(sha, path) == data


def test_a_deltified_pack_is_read_exactly_as_git_reads_it(tmp_path: Path) -> None:
    repo = tmp_path / "packed.git"
    shas = _packed_repository(repo)
    pack = next((repo / "objects" / "pack").glob("*.idx"))
    verified = read_only_git(repo, "verify-pack", "-v", str(pack))
    assert "chain length = 2" in verified  # deltas on deltas, not only whole objects
    assert not [p for p in (repo / "objects").iterdir() if len(p.name) == 2]  # nothing loose
    forge = _forge(repo)
    for sha in shas:
        _check_against_git(forge, repo, sha)
    whole = _served(forge, shas[-1])
    assert _served(forge, shas[-1], "transform/") == {
        p: v for p, v in whole.items() if p.startswith("transform/")
    }
    assert len(_served(forge, "main", "transform/models")) == 40
    assert _served(forge, "main", "meltano.yml") == {}  # a file is not a folder
    assert _served(forge, "main", "nowhere") == {}


def test_loose_objects_on_a_pack_are_read_together(tmp_path: Path) -> None:
    repo = tmp_path / "mixed.git"
    _packed_repository(repo)
    forge = _forge(repo)
    head = forge.branch("main").head
    result = forge.commit(
        "main",
        head,
        [
            FileChange("transform/models/m000.sql", SHARED + b"-- edited\n"),
            FileChange("transform/new/model.sql", b"select 1\n"),
            FileChange("bin/run.sh", None),
        ],
        "edit on the pack",
    )
    assert [p for p in (repo / "objects").iterdir() if len(p.name) == 2]  # some are loose
    _check_against_git(forge, repo, result.sha)
    read_only_git(repo, "fsck", "--strict")


def _loose_path(repo: Path, sha: str) -> Path:
    return repo / "objects" / sha[:2] / sha[2:]


@pytest.fixture
def loose(tmp_path: Path) -> tuple[LocalForge, Path, str, str]:
    """A repository the adapter wrote (every object loose): forge, path, commit, blob id."""
    repo = tmp_path / "loose.git"
    forge = LocalForge.create(ForgeConfig(locate(f"file://{repo}")))
    result = forge.commit(
        "main",
        None,
        [FileChange("meltano.yml", b"version: 1\n"), FileChange("a/b.txt", b"b\n")],
        "first",
    )
    blob = next(e.sha for e in forge.list_tree(result.sha) if e.path == "a/b.txt")
    return forge, repo, result.sha, blob


def test_a_blob_whose_bytes_do_not_match_its_id_is_refused(
    loose: tuple[LocalForge, Path, str, str],
) -> None:
    forge, repo, sha, blob = loose
    path = _loose_path(repo, blob)
    path.chmod(0o644)
    path.write_bytes(zlib.compress(b"blob 2\x00B\n"))  # well formed, other bytes
    with pytest.raises(Unavailable, match=f"corrupt.*{blob}.*a/b.txt"):
        _served(forge, sha)
    with pytest.raises(Unavailable, match="corrupt"):
        forge.read_file(sha, "a/b.txt")
    assert forge.read_file(sha, "meltano.yml") == b"version: 1\n"  # the rest still reads


def test_a_missing_or_unreadable_object_is_refused(
    loose: tuple[LocalForge, Path, str, str],
) -> None:
    forge, repo, sha, blob = loose
    _loose_path(repo, blob).unlink()
    for read in (
        lambda: _served(forge, sha),
        lambda: forge.read_file(sha, "a/b.txt"),
        lambda: forge.list_tree(sha),
    ):
        with pytest.raises(Unavailable, match=f"corrupt.*{blob}.*missing"):
            read()
    tree = next(
        line.split()[2]
        for line in read_only_git(repo, "ls-tree", sha).splitlines()
        if line.endswith("\ta")
    )
    folder = _loose_path(repo, tree)
    folder.chmod(0o644)
    folder.write_bytes(b"not zlib at all")
    with pytest.raises(Unavailable, match=f"corrupt.*{tree}.*cannot be read"):
        forge.list_tree(sha)
    with pytest.raises(Unavailable, match="corrupt"):
        forge.read_file(sha, "a/b.txt")
