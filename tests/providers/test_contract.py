"""One contract, three forges: every case runs on local, GitHub and GitLab, through real
HTTP for the doubles, and checks the resulting bare repository with git (read-only)."""

from __future__ import annotations

import random

import pytest
from pydantic import SecretStr

from providers.contract import Branch, FileChange, FileMode
from providers.errors import AlreadyExists, Conflict, InvalidRequest, NotFound, UnsafeInput
from tests.conftest import Files, ForgeEnv


def sample_tree() -> Files:
    """1,000+ files: binary, empty, spaces, unicode, deep, executable and a symlink."""
    rng = random.Random(7)
    files: Files = {
        f"transform/models/m{i:04d}.sql": f"select {i} as id\n".encode() for i in range(1000)
    }
    files["data/blob.bin"] = bytes(rng.randrange(256) for _ in range(70_000))
    files["data/nul.bin"] = b"\x00\x01\x02\xff" * 10
    files["empty.txt"] = b""
    files["name with spaces.yml"] = b"key: value\n"
    files["ünïcødé/日本語.txt"] = "こんにちは\n".encode()
    files["a/b/c/d/e/f/g/h/i/j/deep.txt"] = b"deep\n"
    files["bin/run.sh"] = (b"#!/bin/sh\necho hi\n", FileMode.EXECUTABLE)
    files["meltano.yml"] = b"version: 1\nproject_id: test\n"
    files["link-to-meltano.yml"] = (b"meltano.yml", FileMode.SYMLINK)
    files["bin/link-up"] = (b"../meltano.yml", FileMode.SYMLINK)
    return files


def as_modes(files: Files) -> dict[str, tuple[bytes, FileMode]]:
    return {p: v if isinstance(v, tuple) else (v, FileMode.REGULAR) for p, v in files.items()}


@pytest.mark.slow
def test_archive_round_trip_is_byte_and_mode_exact(env: ForgeEnv) -> None:
    files = sample_tree()
    sha = env.seed(files)
    with env.forge.archive("main") as snapshot:
        got = {e.path: (e.read(), e.mode) for e in snapshot.entries}
    assert snapshot.sha == sha
    assert got == as_modes(files)
    with env.forge.archive(sha, "transform") as narrowed:
        paths = {e.path for e in narrowed.entries}
    assert len(paths) == 1000
    assert all(p.startswith("transform/") for p in paths)
    listing = {e.path: e for e in env.forge.list_tree(sha)}
    assert set(listing) == set(files)
    assert listing["bin/run.sh"].mode is FileMode.EXECUTABLE
    assert listing["link-to-meltano.yml"].mode is FileMode.SYMLINK
    assert env.forge.read_file(sha, "data/blob.bin") == files["data/blob.bin"]
    assert env.forge.read_file(sha, "ünïcødé/日本語.txt") == files["ünïcødé/日本語.txt"]


def test_atomic_multi_file_commit(env: ForgeEnv) -> None:
    base = env.seed(
        {
            "keep.txt": b"keep\n",
            "edit.yml": b"a: 1\n",
            "gone.txt": b"bye\n",
            "run.sh": b"#!/bin/sh\n",
            "bin/tool": (b"x", FileMode.EXECUTABLE),
        }
    )
    changes = [
        FileChange.put("new/added.txt", b"added\n"),
        FileChange.put("edit.yml", b"a: 2\n", base_mode=FileMode.REGULAR),
        FileChange.delete("gone.txt"),
        FileChange.put("run.sh", b"#!/bin/sh\n", FileMode.EXECUTABLE, FileMode.REGULAR),
        FileChange.put("bin/tool", b"x", FileMode.REGULAR, FileMode.EXECUTABLE),
        FileChange.put("new/data.bin", bytes(range(256)) * 4),
    ]
    result = env.forge.commit("main", base, changes, "meltano config set\n\nMeltano-Forge-Run: t1")
    assert result.parent == base
    assert not result.rebased
    assert env.head() == result.sha
    assert env.git("rev-list", "--count", f"{base}..main").strip() == "1"
    raw = env.git("diff-tree", "-r", "--no-commit-id", "--raw", base, result.sha)
    seen = {
        line.split("\t")[1]: [*line.split()[0:2], line.split()[4]]
        for line in raw.strip().splitlines()
    }
    assert seen == {
        "new/added.txt": [":000000", "100644", "A"],
        "edit.yml": [":100644", "100644", "M"],
        "gone.txt": [":100644", "000000", "D"],
        "run.sh": [":100644", "100755", "M"],
        "bin/tool": [":100755", "100644", "M"],
        "new/data.bin": [":000000", "100644", "A"],
    }
    assert env.git("show", f"{result.sha}:keep.txt") == "keep\n"
    assert env.git("log", "-1", "--format=%B", "main").startswith(
        "meltano config set\n\nMeltano-Forge-Run: t1"
    )
    env.git("fsck", "--strict")


def test_stale_commit_on_overlapping_paths_is_a_conflict(env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n", "other.txt": b"o\n"})
    theirs = env.forge.commit(
        "main",
        base,
        [FileChange.put("meltano.yml", b"v: 2\n", base_mode=FileMode.REGULAR)],
        "theirs",
    )
    with pytest.raises(Conflict) as caught:
        env.forge.commit(
            "main",
            base,
            [
                FileChange.put("meltano.yml", b"v: 3\n", base_mode=FileMode.REGULAR),
                FileChange.put("mine.txt", b"m\n"),
            ],
            "mine",
        )
    assert caught.value.paths == ("meltano.yml",)
    assert "meltano.yml" in str(caught.value)
    assert env.head() == theirs.sha
    with pytest.raises(Conflict) as deleted:
        env.forge.commit("main", base, [FileChange.delete("meltano.yml")], "delete")
    assert deleted.value.paths == ("meltano.yml",)
    assert env.head() == theirs.sha


def test_stale_commit_on_disjoint_paths_lands_on_the_new_head(env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n", "other.txt": b"o\n"})
    theirs = env.forge.commit(
        "main",
        base,
        [FileChange.put("meltano.yml", b"v: 2\n", base_mode=FileMode.REGULAR)],
        "theirs",
    )
    mine = env.forge.commit(
        "main",
        base,
        [
            FileChange.put("other.txt", b"o2\n", base_mode=FileMode.REGULAR),
            FileChange.put("x.txt", b"x\n"),
        ],
        "mine",
    )
    assert mine.parent == theirs.sha
    assert mine.rebased
    assert env.git("show", "main:meltano.yml") == "v: 2\n"
    assert env.git("show", "main:other.txt") == "o2\n"
    assert env.git("rev-list", "--count", "main").strip() == "3"


def test_branches_and_creation(env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n"})
    created = env.forge.create_branch("development", base)
    assert created == Branch("development", base, False)
    assert env.forge.branch("development").head == base
    assert [b.name for b in env.forge.branches()] == ["development", "main"]
    with pytest.raises(AlreadyExists):
        env.forge.create_branch("development", base)
    with pytest.raises(InvalidRequest, match="folder") as clash:
        env.forge.create_branch("development/aj", base)
    assert "development-aj" in str(clash.value)
    env.forge.create_branch("development-aj", base)
    with pytest.raises(NotFound):
        env.forge.branch("nope")
    env.clear_log()
    for bad in ("bad..name", "-x", "a b", "refs/heads/x", "x.lock", ""):
        with pytest.raises(UnsafeInput):
            env.forge.create_branch(bad, base)
    assert env.requests() == 0
    assert env.head("development/aj") is None


def test_repository_info_and_empty_repository(env: ForgeEnv) -> None:
    info = env.forge.repository()
    assert info.default_branch == "main"
    assert info.empty
    result = env.forge.commit(
        "main",
        None,
        [
            FileChange.put("meltano.yml", b"version: 1\n"),
            FileChange.put("README.md", b"hi\n"),
            FileChange.put("bin/x", b"x", FileMode.EXECUTABLE),
        ],
        "meltano init",
    )
    assert env.head() == result.sha
    assert sorted(env.git("ls-tree", "-r", "--name-only", "main").split()) == [
        "README.md",
        "bin/x",
        "meltano.yml",
    ]
    assert "100755" in env.git("ls-tree", "main", "bin/x")
    assert not env.forge.repository().empty


def test_repository_says_whether_the_token_may_push(env: ForgeEnv) -> None:
    """Known before the first commit (the setup screen asks it of an empty repository)."""
    assert env.forge.repository().can_push is True
    if env.double is None:
        return
    env.double.add_token("reader-token-0042", "read")
    reader = env.new_forge(token=SecretStr("reader-token-0042"))
    assert reader.repository().can_push is False


def test_repository_says_whether_the_token_administers_it(env: ForgeEnv) -> None:
    """What `promote --override-check` asks: GitHub's `permissions.admin`, GitLab's
    Maintainer level, a local repository's owner."""
    if env.double is None:
        assert env.forge.repository().can_admin is True
        return
    env.double.add_token("admin-token-0042", "admin")
    env.double.add_token("writer-token-0042", "write")
    assert env.new_forge(token=SecretStr("admin-token-0042")).repository().can_admin is True
    writer = env.new_forge(token=SecretStr("writer-token-0042")).repository()
    assert writer.can_admin is False
    assert writer.can_push is True


def test_change_requests_are_idempotent(env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n"})
    env.forge.create_branch("development", base)
    env.forge.commit(
        "development",
        base,
        [FileChange.put("meltano.yml", b"v: 2\n", base_mode=FileMode.REGULAR)],
        "change",
    )
    if not env.forge.capabilities.change_requests:
        first = env.forge.open_change_request("development", "main", "Promote", "body")
        assert first.merged
        assert "fast-forwarded 'main'" in first.detail
        assert env.head("main") == env.head("development")
        again = env.forge.open_change_request("development", "main", "Promote", "body")
        assert again.merged
        assert "already holds every commit" in again.detail
        return
    first = env.forge.open_change_request("development", "main", "Promote development", "body")
    second = env.forge.open_change_request("development", "main", "Promote development", "body")
    assert first.created
    assert not second.created
    assert (first.number, first.url) == (second.number, second.url)


def test_unsafe_paths_are_refused_before_any_request(env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n"})
    env.clear_log()
    for path in ("../escape", "/abs", "a/../b", ".git/config", "a//b", "x/.GIT/y"):
        with pytest.raises(UnsafeInput):
            env.forge.commit("main", base, [FileChange.put(path, b"x")], "bad")
    with pytest.raises(InvalidRequest):
        env.forge.commit("main", base, [], "empty")
    assert env.requests() == 0
    assert env.head() == base


def test_symlink_commits_follow_capabilities(env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n"})
    change = [FileChange.put("link", b"meltano.yml", FileMode.SYMLINK)]
    if env.forge.capabilities.symlinks:
        result = env.forge.commit("main", base, change, "link")
        assert env.git("ls-tree", result.sha, "link").startswith("120000")
    else:
        with pytest.raises(InvalidRequest, match="symlink"):
            env.forge.commit("main", base, change, "link")
        assert env.head() == base


def test_changed_paths(env: ForgeEnv) -> None:
    base = env.seed({"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    head = env.seed({"a.txt": b"A", "d.txt": b"d"}, parent=base)
    assert env.forge.changed_paths(base, head) == {"a.txt", "d.txt"}


def test_unknown_commits_are_not_found(env: ForgeEnv) -> None:
    base = env.seed({"a.txt": b"a"})
    missing = "1" * 40
    with pytest.raises(NotFound):
        env.forge.changed_paths(base, missing)
    with pytest.raises(NotFound):
        env.forge.list_tree(missing)
    with pytest.raises(NotFound):
        env.forge.read_file(missing, "a.txt")


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_local_promotion_merges_disjoint_changes_and_refuses_overlaps(env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n", "README.md": b"readme\n"})
    env.forge.create_branch("development", base)
    dev = env.forge.commit(
        "development",
        base,
        [FileChange.put("meltano.yml", b"v: 2\n", base_mode=FileMode.REGULAR)],
        "dev",
    ).sha
    hotfix = env.forge.commit(
        "main", base, [FileChange.put("README.md", b"fixed\n", base_mode=FileMode.REGULAR)], "fix"
    ).sha
    merged = env.forge.open_change_request("development", "main", "Promote", "body")
    assert merged.merged
    assert "merged into 'main'" in merged.detail
    parents = env.git("log", "-1", "--format=%P", "main").split()
    assert parents == [hotfix, dev]
    assert env.git("show", "main:meltano.yml") == "v: 2\n"
    assert env.git("show", "main:README.md") == "fixed\n"
    env.forge.commit(
        "development",
        dev,
        [FileChange.put("README.md", b"dev readme\n", base_mode=FileMode.REGULAR)],
        "dev readme",
    )
    before = env.head("main")
    with pytest.raises(Conflict) as refused:
        env.forge.open_change_request("development", "main", "Promote", "body")
    assert refused.value.paths == ("README.md",)
    assert "both changed the same lines" in str(refused.value)
    assert env.head("main") == before


def test_history_and_ahead_behind(env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n"}, message="first")
    env.forge.create_branch("development", base)
    one = env.forge.commit(
        "development",
        base,
        [FileChange.put("meltano.yml", b"v: 2\n", base_mode=FileMode.REGULAR)],
        "second\n\nwith a body",
    ).sha
    two = env.forge.commit("development", one, [FileChange.put("a.txt", b"a\n")], "third").sha
    env.forge.commit("main", base, [FileChange.put("b.txt", b"b\n")], "on main")
    history = env.forge.history(two, 10)
    assert [c.sha for c in history] == [two, one, base]
    assert history[1].message.startswith("second")
    assert history[1].parents == (base,)
    assert history[0].author.name
    assert env.forge.history(two, 2)[-1].sha == one
    assert env.forge.ahead_behind(env.head("main") or "", two) == (2, 1)
