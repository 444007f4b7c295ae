"""`fleet`: twenty runners start at once against gitlab.com's archive limit.

gitlab.com allows 5 archive downloads a minute per user and project. A GitLab double of
this scenario's own enforces that (`--archive-rate-limit 5`, the real clock) behind the
bench's latency proxy. Each measurement seeds a new copy of the project, since the limit
counts per project, so every fleet starts on a full window. Twenty threads, each with its
own adapter and an empty folder, as twenty containers have, look up the branch and
materialize its head at once: 5 get the archive, the others read the tree file by file.
The row is the wall time until the last runner is done, with the requests that crossed
the proxy, by kind.

Before the fallback, the 15 refused runners slept through `Retry-After`, 5 more each
minute: the last ones started their download 3 windows later. That time is computed from
the limit (3 windows of 60 s plus one archive runner's own time), not waited for here.
"""

from __future__ import annotations

import math
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from bench.harness import ROOT, Bench, project_files, seed_packed
from bench.servers import LatencyProxy
from client.workspace import Workspace
from providers.config import ForgeConfig
from providers.gitlab import GitLabForge
from providers.registry import locate, open_forge

RUNNERS = 20
LIMIT = 5
"""Archive downloads a minute per user and project on gitlab.com."""
WINDOW = 60


class _Uncapped(GitLabForge):
    """The adapter with no cap on the files it reads one by one (to measure what a
    larger tree would cost; by default it waits for the archive past 400 files)."""

    fallback_max_files = 1_000_000


def fleet(bench: Bench, size: str, reps: int = 1) -> None:
    """`reps` fleets of twenty on new copies of the project of `size`: one row."""
    repos = bench.work / "fleet"
    process, port = _limited_double(repos)
    proxy = LatencyProxy(port, bench.rtt)
    files = project_files(size)
    times: list[float] = []
    try:
        for _ in range(reps):
            name = f"bench/group/fleet-{size}-{uuid.uuid4().hex[:8]}"
            sha = seed_packed([repos / f"{name}.git"], files)
            proxy.reset()
            uncapped = len(files) > GitLabForge.fallback_max_files
            routes, took, wall = _run(bench, proxy.port, name, sha, len(files), uncapped)
            traffic = proxy.reset()
            times.append(wall)
    finally:
        process.terminate()
        process.wait(10)
    fallen = routes.count("files")
    tree = traffic.matching(r"GET \S+/repository/tree\?")
    blobs = traffic.matching(r"GET \S+/repository/blobs/")
    archives = traffic.matching(r"GET \S+/repository/archive")
    per_fallback = 2 + (tree + blobs) / max(fallen, 1)  # the branch, the refused archive
    archive_took = statistics.median(t for t, r in zip(took, routes, strict=True) if r == "archive")
    before = (math.ceil(RUNNERS / LIMIT) - 1) * WINDOW + archive_took
    bench.add(
        f"fleet: {RUNNERS} runners, {LIMIT} archives/min",
        "gitlab",
        size,
        (
            statistics.median(times),
            max(times),
            len(traffic.requests),
            traffic.bytes_up,
            traffic.bytes_down,
        ),
        table="fleet",
        value=before,
        note=(
            f"routes {RUNNERS - fallen} archive / {fallen} files; archive requests {archives}, "
            f"tree pages {tree}, blobs {blobs}; per file-by-file runner {per_fallback:.0f} "
            f"requests, per archive runner 2; one archive runner {archive_took:.2f}s; "
            f"before (sleeping through Retry-After, computed) {before:.0f}s"
            + ("; cap on files read one by one lifted" if uncapped else "")
        ),
    )


def _run(
    bench: Bench, port: int, name: str, sha: str, count: int, uncapped: bool
) -> tuple[list[str], list[float], float]:
    """Twenty runners at once; each one's route and time, and the wall time of all."""
    base = f"http://127.0.0.1:{port}"
    start = threading.Barrier(RUNNERS + 1)
    routes: list[str] = []
    took: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def runner(i: int) -> None:
        config = ForgeConfig(locate(f"{base}/{name}", "gitlab", base + "/api/v4"))
        forge = _Uncapped(config) if uncapped else open_forge(config)
        folder = bench.folder() / f"runner-{i}"
        try:
            start.wait()
            began = time.perf_counter()
            head = forge.branch("main").head
            assert head == sha
            ws = Workspace.open(folder, forge)
            ws.update("main", head, repo=name)
            assert len(ws.manifest.files) == count
            assert isinstance(forge, GitLabForge)
            with lock:
                routes.append(forge.archive_route)
                took.append(time.perf_counter() - began)
        except BaseException as exc:  # noqa: BLE001 - raised once every runner is done
            with lock:
                errors.append(exc)
        finally:
            forge.close()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(RUNNERS)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    if errors:
        raise errors[0]
    return routes, took, wall


def _limited_double(repos: Path) -> tuple[subprocess.Popen[str], int]:
    """The GitLab double, enforcing the archive limit, as bench.harness starts doubles."""
    repos.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.forges",
            "gitlab",
            "--port",
            "0",
            "--repos",
            str(repos),
            "--archive-rate-limit",
            str(LIMIT),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r":(\d+);", line)
    assert match, line
    return process, int(match.group(1))
