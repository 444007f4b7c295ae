"""gitlab.com's archive limit (5 downloads a minute per user and project): the GitLab double
enforces it when asked, and the adapter reads the same snapshot file by file instead of
sleeping through a minute's `Retry-After`. Counted in the double's log, never timed; the
double's clock is a `ManualClock`, so windows move without sleeping."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
import requests
from pydantic import SecretStr

from client.workspace import Workspace
from providers.config import ForgeConfig
from providers.contract import FileMode, Forge
from providers.errors import RateLimited, UnsafeInput
from providers.gitlab import GitLabForge
from providers.registry import locate, open_forge
from providers.retry import RetryPolicy
from tests.conftest import FAST_RETRY, TOKEN, Files, seed_repo
from tests.forges import gitdata
from tests.forges.gitlab import GitLabDouble
from tests.forges.ratelimit import ARCHIVE_MESSAGE, ArchiveLimit, ManualClock
from tests.forges.server import Fault

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "meltano" / "meltano-manifest"
ARCHIVE = r"/repository/archive"
TREE = r"/repository/tree$"
BLOBS = r"/repository/blobs/[0-9a-f]{40}/raw$"


def project() -> Files:
    """The Meltano fixture, plus what an archive must keep exactly: an executable, links
    to a file and to a folder, an empty file, a duplicate, and one file over 1 MiB."""
    files: Files = {
        str(p.relative_to(FIXTURE)): p.read_bytes() for p in FIXTURE.rglob("*") if p.is_file()
    }
    files["orchestrate/run.sh"] = (b"#!/bin/sh\nmeltano run tap target\n", FileMode.EXECUTABLE)
    files["current.meltano.yml"] = (b"meltano.yml", FileMode.SYMLINK)
    files["plugins/current"] = (b"extractors", FileMode.SYMLINK)
    files["transform/models/.gitkeep"] = b""
    files["transform/models/copy.sql"] = b"select 1\n"
    files["transform/models/same.sql"] = b"select 1\n"
    files["transform/seeds/big.csv"] = os.urandom(3 << 19)
    return files


@dataclass
class Limited:
    """A GitLab double that allows `per_minute` archives, with one project on it."""

    double: GitLabDouble
    limit: ArchiveLimit
    clock: ManualClock
    name: str
    sha: str
    files: Files

    def config(self, retry: RetryPolicy = FAST_RETRY) -> ForgeConfig:
        location = locate(f"{self.double.url}/{self.name}", "gitlab", self.double.url + "/api/v4")
        return ForgeConfig(location, token=SecretStr(TOKEN), retry=retry)

    def forge(self, retry: RetryPolicy = FAST_RETRY) -> Forge:
        return open_forge(self.config(retry))

    def count(self, path: str, status: int | None = None) -> int:
        return sum(
            1 for e in self.double.requests("GET", path) if status is None or e.status == status
        )


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Limited]:
    clock = ManualClock()  # at the start of a minute: a refusal's Retry-After is 60
    limit = ArchiveLimit(5, clock)
    with GitLabDouble(tmp_path / "gitlab", token=TOKEN, archive_rate_limit=limit) as double:
        assert isinstance(double, GitLabDouble)
        name = f"group/sub/p{uuid.uuid4().hex[:6]}"
        files = project()
        sha = seed_repo(double.create_repo(name), files)
        yield Limited(double, limit, clock, name, sha, files)


def spend_archives(env: Limited, n: int = 5) -> None:
    """Use up the window's archive downloads, as other runners of the same user would."""
    for _ in range(n):
        forge = env.forge()
        with forge.archive(env.sha) as snapshot:
            list(snapshot.entries)
        forge.close()


def folder_files(root: Path) -> dict[str, tuple[str, bytes]]:
    """What a materialized folder holds: kind and bytes (a link's target) per file."""
    out: dict[str, tuple[str, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".meltano-forge"]
        for name in [*filenames, *(d for d in dirnames if Path(dirpath, d).is_symlink())]:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path).encode())
            else:
                kind = "exec" if os.access(path, os.X_OK) else "file"
                out[rel] = (kind, path.read_bytes())
    return out


def expected(files: Files) -> dict[str, tuple[str, bytes]]:
    kinds = {FileMode.REGULAR: "file", FileMode.EXECUTABLE: "exec", FileMode.SYMLINK: "link"}
    return {
        p: (kinds[v[1]], v[0]) if isinstance(v, tuple) else ("file", v) for p, v in files.items()
    }


def distinct_blobs(files: Files) -> set[bytes]:
    """The contents a file-by-file read fetches: each once, the empty one never."""
    return {v[0] if isinstance(v, tuple) else v for v in files.values()} - {b""}


def tree_pages(files: Files) -> int:
    """Pages of the recursive tree: its files and folders, 100 a page."""
    folders = {str(p) for f in files for p in PurePosixPath(f).parents if str(p) != "."}
    return -(-(len(files) + len(folders)) // 100)


# ---- the double ------------------------------------------------------------------------
def test_the_double_answers_gitlabs_429_past_the_limit_and_again_next_minute(
    limited: Limited,
) -> None:
    url = f"{limited.double.url}/api/v4/projects/{limited.name.replace('/', '%2F')}"
    url += f"/repository/archive.tar.gz?sha={limited.sha}"
    headers = {"PRIVATE-TOKEN": TOKEN}
    ok = [requests.get(url, headers=headers, timeout=10).status_code for _ in range(5)]
    over = requests.get(url, headers=headers, timeout=10)
    assert ok == [200] * 5
    assert over.status_code == 429
    assert over.json() == {"message": {"error": ARCHIVE_MESSAGE}}
    assert over.headers["Retry-After"] == "60"
    assert over.headers["RateLimit-Limit"] == "5"
    assert over.headers["RateLimit-Observed"] == "6"
    assert over.headers["RateLimit-Remaining"] == "0"
    reset = int(limited.clock() // 60 + 1) * 60
    assert over.headers["RateLimit-Reset"] == str(reset)
    assert over.headers["RateLimit-ResetTime"].endswith(" GMT")
    limited.clock.advance(45)
    assert requests.get(url, headers=headers, timeout=10).headers["Retry-After"] == "15"
    limited.clock.advance(15)
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    assert (limited.limit.served, limited.limit.refused) == (6, 2)


def test_the_double_can_answer_like_rack_attack(limited: Limited) -> None:
    limited.limit.answer = "throttle"
    spend_archives(limited)
    url = f"{limited.double.url}/api/v4/projects/{limited.name.replace('/', '%2F')}"
    over = requests.get(
        url + "/repository/archive.tar.gz", headers={"PRIVATE-TOKEN": TOKEN}, timeout=10
    )
    assert over.status_code == 429
    assert over.text == "Retry later\n"
    assert over.headers["Retry-After"] == "60"


@pytest.mark.parametrize("answer", ["archive", "throttle"])
def test_the_standalone_double_takes_the_limit_as_flags(tmp_path: Path, answer: str) -> None:
    name = "data/platform/warehouse"
    seed_repo(gitdata.init_bare(tmp_path / f"{name}.git"), {"meltano.yml": b"version: 1\n"})
    root = Path(__file__).resolve().parents[2]
    args = ["--archive-rate-limit", "2", "--archive-limit-answer", answer]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.forges", "gitlab", "--repos", str(tmp_path), *args],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", process.stdout.readline())
        assert match
        project = f"{match.group(1)}/api/v4/projects/{name.replace('/', '%2F')}"
        url = project + "/repository/archive.tar.gz"
        answers = [requests.get(url, timeout=10) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].headers["RateLimit-Limit"] == "2"
        refused = answers[2].text
        assert refused == "Retry later\n" if answer == "throttle" else ARCHIVE_MESSAGE in refused
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()


# ---- the adapter -----------------------------------------------------------------------
def test_a_limited_archive_is_read_file_by_file_with_the_same_files_and_modes(
    limited: Limited, caplog: pytest.LogCaptureFixture
) -> None:
    forge = limited.forge()
    with forge.archive(limited.sha) as snapshot:
        by_archive = {e.path: (e.mode, e.read()) for e in snapshot.entries}
    spend_archives(limited, 4)
    limited.double.clear_log()
    with (
        caplog.at_level(logging.INFO, logger="providers.gitlab"),
        forge.archive(limited.sha) as snapshot,
    ):
        assert snapshot.sha == limited.sha
        by_files = {e.path: (e.mode, e.read()) for e in snapshot.entries}
    assert by_files == by_archive
    assert by_files["orchestrate/run.sh"][0] is FileMode.EXECUTABLE
    assert by_files["plugins/current"] == (FileMode.SYMLINK, b"extractors")
    lines = [r.getMessage() for r in caplog.records if r.name == "providers.gitlab"]
    assert len(lines) == 1
    assert "archive download limit was reached (the next is allowed in 60s)" in lines[0]
    assert f"reading the {len(limited.files)} files of {limited.sha[:12]} one by one" in lines[0]
    distinct = distinct_blobs(limited.files)
    pages = tree_pages(limited.files)
    assert limited.count(ARCHIVE, 429) == 1
    assert limited.count(TREE) == pages
    assert limited.count(BLOBS) == len(distinct), "each blob once, the empty one never"
    assert len(limited.double.requests()) == 1 + pages + len(distinct)
    forge.close()


def test_a_project_in_a_folder_is_read_under_that_folder_only(limited: Limited) -> None:
    forge = limited.forge()
    with forge.archive(limited.sha, "plugins/") as snapshot:
        by_archive = {e.path: (e.mode, e.read()) for e in snapshot.entries}
    spend_archives(limited, 4)
    limited.double.clear_log()
    with forge.archive(limited.sha, "plugins/") as snapshot:
        by_files = {e.path: (e.mode, e.read()) for e in snapshot.entries}
    assert by_files == by_archive
    inside = {p: v for p, v in limited.files.items() if p.startswith("plugins/")}
    assert sorted(by_files) == sorted(inside)
    assert limited.count(BLOBS) == len(distinct_blobs(inside)), "no file outside the folder"
    forge.close()


def test_a_branch_name_is_pinned_to_its_commit(limited: Limited) -> None:
    spend_archives(limited)
    limited.double.clear_log()
    forge = limited.forge()
    with forge.archive("main") as snapshot:
        assert snapshot.sha == limited.sha
        assert len(list(snapshot.entries)) == len(limited.files)
    assert limited.count(r"/repository/commits/main$") == 1
    forge.close()


def test_materialize_by_files_equals_materialize_by_archive(
    limited: Limited, tmp_path: Path
) -> None:
    forge = limited.forge()
    Workspace.open(tmp_path / "by-archive", forge).update("main", limited.sha, repo=limited.name)
    spend_archives(limited, 4)
    limited.double.clear_log()
    Workspace.open(tmp_path / "by-files", forge).update("main", limited.sha, repo=limited.name)
    assert limited.count(ARCHIVE, 429) == 1
    assert limited.count(BLOBS) > 0
    by_archive = folder_files(tmp_path / "by-archive")
    assert folder_files(tmp_path / "by-files") == by_archive
    assert by_archive == expected(limited.files)
    forge.close()


def test_rack_attacks_plain_429_falls_back_too(limited: Limited) -> None:
    limited.limit.answer = "throttle"
    spend_archives(limited)
    limited.double.clear_log()
    forge = limited.forge()
    with forge.archive(limited.sha) as snapshot:
        assert len(list(snapshot.entries)) == len(limited.files)
    assert limited.count(ARCHIVE, 429) == 1
    assert limited.count(BLOBS) > 0
    forge.close()


def test_a_short_wait_is_waited_for_not_read_file_by_file(limited: Limited) -> None:
    spend_archives(limited)
    limited.clock.advance(59)  # one second left in the window
    limited.double.clear_log()
    forge = limited.forge(RetryPolicy(attempts=2, base_delay=0.01, max_wait=5.0))
    with pytest.raises(RateLimited), forge.archive(limited.sha):
        pass  # the clock stands still, so the retry a second later is refused again
    assert limited.count(ARCHIVE, 429) == 2
    assert limited.count(TREE) == limited.count(BLOBS) == 0
    forge.close()


def test_a_tree_too_large_to_read_file_by_file_waits_for_the_archive(limited: Limited) -> None:
    class FewFiles(GitLabForge):
        fallback_max_files = 3

    spend_archives(limited)
    limited.double.clear_log()
    forge = FewFiles(limited.config())
    with pytest.raises(RateLimited), forge.archive(limited.sha):
        pass  # FAST_RETRY sleeps through 5 s at most; the double asks for 60
    assert limited.count(ARCHIVE, 429) == 2, "the fallback's try, then the ordinary one"
    assert limited.count(TREE) == 1
    assert limited.count(BLOBS) == 0
    forge.close()


def test_a_blob_that_does_not_match_its_id_is_refused(limited: Limited, tmp_path: Path) -> None:
    spend_archives(limited)
    limited.double.inject(Fault("GET", BLOBS, status=200, raw=b"not what the tree says"))
    forge = limited.forge()
    with pytest.raises(UnsafeInput, match="do not match its id"):
        Workspace.open(tmp_path / "ws", forge).update("main", limited.sha, repo=limited.name)
    assert not (tmp_path / "ws" / "meltano.yml").exists()
    forge.close()


def test_a_link_out_of_the_project_is_refused_file_by_file_too(
    limited: Limited, tmp_path: Path
) -> None:
    sha = seed_repo(
        limited.double.repo_path(limited.name),
        {"escape": (b"../../etc/passwd", FileMode.SYMLINK)},
        parent=limited.sha,
    )
    spend_archives(limited)
    forge = limited.forge()
    with pytest.raises(UnsafeInput, match="points outside the project"):
        Workspace.open(tmp_path / "ws", forge).update("main", sha, repo=limited.name)
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").iterdir())
    assert limited.count(ARCHIVE, 429) == 1, "read file by file"
    forge.close()


# ---- a fleet ---------------------------------------------------------------------------
def test_twenty_runners_materialize_at_once_without_waiting_out_the_limit(
    limited: Limited, tmp_path: Path
) -> None:
    """20 fresh runners of one user start together: 5 get the archive, 15 read the tree
    file by file. None retries the archive, so none waited for a `Retry-After`."""
    runners = 20
    start = threading.Barrier(runners)
    routes: list[str] = []
    errors: list[BaseException] = []

    def runner(i: int) -> None:
        forge = limited.forge(RetryPolicy())  # the default policy sleeps through 60 s
        try:
            start.wait()
            Workspace.open(tmp_path / f"runner-{i}", forge).update(
                "main", limited.sha, repo=limited.name
            )
            assert isinstance(forge, GitLabForge)
            routes.append(forge.archive_route)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            forge.close()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    want = expected(limited.files)
    for i in range(runners):
        assert folder_files(tmp_path / f"runner-{i}") == want, f"runner {i}"
    assert sorted(routes) == ["archive"] * 5 + ["files"] * 15
    distinct = distinct_blobs(limited.files)
    pages = tree_pages(limited.files)
    assert limited.count(ARCHIVE, 200) == 5
    assert limited.count(ARCHIVE, 429) == 15
    assert limited.count(ARCHIVE) == runners, "one archive request per runner: no retry"
    assert limited.count(TREE) == 15 * pages
    assert limited.count(BLOBS) == 15 * len(distinct)
    assert len(limited.double.requests()) == 20 + 15 * (pages + len(distinct))
