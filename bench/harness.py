"""The harness every scenario runs on: projects, bare repositories, the forge doubles and
the git host behind latency proxies, repetitions, and the rows they produce.

Nothing here asserts a time; scenarios add rows, `bench.report` prints them.
"""

from __future__ import annotations

import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.servers import GitHost, LatencyProxy
from providers import gitobjects
from providers.config import ForgeConfig
from providers.contract import FileMode, Forge
from providers.registry import locate, open_forge
from tests.forges import gitdata

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "meltano" / "meltano-manifest"
PLUGIN = "plugins:\n  utilities:\n  - name: example\n    namespace: example\n    settings:\n    - name: a_string\n"
AUTHOR = ("bench", "bench@localhost")
FORGES = ("github", "gitlab", "git", "local")


@dataclass
class Row:
    """One measured line: a scenario on a provider and project size, behind one RTT."""

    scenario: str
    provider: str
    size: str
    rtt_ms: int
    median_s: float
    p90_s: float
    requests: int
    bytes_up: int
    bytes_down: int
    git_median_s: float | None = None
    table: str = "main"
    """Which table shows it: 'main', 'curve' (cost curve only), 'memory', 'service',
    'runner'."""
    value: float | None = None
    """A non-time measure (peak RSS in MB, requests a second, an overhead in s)."""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """Our median over git's, when there is a baseline."""
        return self.median_s / self.git_median_s if self.git_median_s else None


Measured = tuple[float, float, int, int, int]
"""Median s, p90 s, and the last repetition's requests, bytes up and bytes down."""


def project_files(size: str) -> dict[str, tuple[bytes, FileMode]]:
    """The fixture, or a generated Meltano project with a dbt `transform/` tree."""
    if size == "fixture":
        return {
            str(p.relative_to(FIXTURE)): (p.read_bytes(), FileMode.REGULAR)
            for p in FIXTURE.rglob("*")
            if p.is_file()
        }
    count = int(size)
    rng = random.Random(count)
    files = {
        "meltano.yml": (
            b"version: 1\nproject_id: bench\ndefault_environment: dev\nenvironments:\n- name: dev\n"
            + PLUGIN.encode(),
            FileMode.REGULAR,
        )
    }
    files["transform/dbt_project.yml"] = (
        b"name: bench\nversion: '1.0'\nprofile: bench\n",
        FileMode.REGULAR,
    )
    groups = max(40, count // 250)  # about 80 files a folder, like a dbt project
    for i in range(count - 20):
        layer = ("staging", "intermediate", "marts")[i % 3]
        files[f"transform/models/{layer}/group_{i % groups:03d}/model_{i:06d}.sql"] = (
            f"-- model {i}\nselect id, name, updated_at\nfrom {{{{ ref('src_{i % 97}') }}}}\nwhere id % {i + 1} = 0\n".encode(),
            FileMode.REGULAR,
        )
    for i in range(10):
        files[f"transform/seeds/seed_{i}.parquet"] = (rng.randbytes(4096), FileMode.REGULAR)
    for i in range(8):
        files[f"orchestrate/scripts/task_{i}.sh"] = (
            f"#!/bin/sh\necho task {i}\n".encode(),
            FileMode.EXECUTABLE,
        )
    return files


def seed_packed(paths: list[Path], files: dict[str, tuple[bytes, FileMode]]) -> str:
    """Bare repositories holding `files` as one commit on main, in one pack each (as a
    forge or a pushed repository holds them; a loose object per file would make the git
    baseline pack 100k objects per clone)."""
    from dulwich.object_store import MemoryObjectStore
    from dulwich.repo import Repo

    memory = MemoryObjectStore()
    edits = [
        gitobjects.TreeEdit(p, m, gitobjects.add_blob(memory, d)) for p, (d, m) in files.items()
    ]
    tree = gitobjects.apply_edits(memory, None, edits)
    sha = gitobjects.make_commit(memory, tree, [], "seed", AUTHOR, when=1_700_000_000)
    objects = [(memory[oid], None) for oid in memory]
    for path in paths:
        gitdata.init_bare(path)
        repo = Repo(str(path))
        try:
            repo.object_store.add_objects(objects)
            gitdata.set_head(repo, "main", None, sha)
        finally:
            repo.close()
    return sha.decode()


def measure(reps: int, fn: Callable[[int], Any], proxy: LatencyProxy | None) -> Measured:
    """Median and p90 seconds over `reps`, and the last rep's requests and bytes."""
    times = []
    requests = up = down = 0
    for rep in range(reps):
        if proxy:
            proxy.reset()
        start = time.perf_counter()
        fn(rep)
        times.append(time.perf_counter() - start)
        if proxy:
            traffic = proxy.reset()
            requests, up, down = len(traffic.requests), traffic.bytes_up, traffic.bytes_down
    times.sort()
    p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
    return statistics.median(times), p90, requests, up, down


LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def child_peak_rss(code: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run `code` in a fresh Python; its peak RSS in MB (os.wait4's ru_maxrss) and wall s.

    Linux starts a program's ru_maxrss at the high-water mark of the process that exec'd
    it (this one, large), so a small launcher starts it and reports what wait4 says."""
    start = time.perf_counter()
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    code_, maxrss_kib = (int(x) for x in launched.stdout.split())
    assert code_ == 0, f"child failed ({code_}): {launched.stderr[-2000:]}"
    return maxrss_kib / 1024, time.perf_counter() - start


class Bench:
    """One run: repositories, servers, proxies and the rows they produce."""

    def __init__(self, rtt: float, reps: int, sizes: list[str], work: Path) -> None:
        self.rtt, self.reps, self.sizes, self.work = rtt, reps, sizes, work
        self.rows: list[Row] = []
        self.repos = work / "repos"
        self.shas: dict[str, str] = {}
        for size in sizes:
            self.seed(size)
        self.doubles = {forge: self._double(forge) for forge in ("github", "gitlab")}
        self.proxies = {forge: LatencyProxy(port, rtt) for forge, (_, port) in self.doubles.items()}
        self.git_host = GitHost(self.repos / "git")
        self.proxies["git"] = LatencyProxy(self.git_host.port, rtt)

    def seed(self, size: str) -> None:
        """The project of `size` in every forge's folder (once)."""
        if size in self.shas:
            return
        paths = [self.repo_dir(forge, size) for forge in FORGES]
        self.shas[size] = seed_packed(paths, project_files(size))

    def repo_dir(self, forge: str, size: str) -> Path:
        """Where `forge` keeps the project of `size`."""
        name = {"gitlab": f"bench/group/p{size}", "local": f"p{size}"}.get(forge, f"bench/p{size}")
        return self.repos / forge / f"{name}.git"

    def _double(self, forge: str) -> tuple[subprocess.Popen[str], int]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.forges",
                forge,
                "--port",
                "0",
                "--repos",
                str(self.repos / forge),
                "--no-validate",
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

    def close(self) -> None:
        """Stop the doubles and the git host."""
        for process, _ in self.doubles.values():
            process.terminate()
            process.wait(10)
        self.git_host.stop()

    def forge(self, provider: str, size: str) -> Forge:
        """An adapter on the project of `size`, through the proxy."""
        if provider == "local":
            return open_forge(ForgeConfig(locate(f"file://{self.repo_dir('local', size)}")))
        kind = provider.split("-")[0]
        base = self.base_url(kind)
        name = f"bench/p{size}" if kind == "github" else f"bench/group/p{size}"
        api = base + ("/api/v3" if kind == "github" else "/api/v4")
        return open_forge(
            ForgeConfig(
                locate(f"{base}/{name}", kind, api), graphql_commits=provider != "github-rest"
            )
        )

    def base_url(self, kind: str) -> str:
        """The proxy in front of `kind` ('github', 'gitlab' or 'git')."""
        return f"http://127.0.0.1:{self.proxies[kind].port}"

    def forge_env(self, provider: str, size: str) -> dict[str, str]:
        """`MELTANO_FORGE_*` for a runner on the project of `size`."""
        if provider == "local":
            return {"MELTANO_FORGE_REPO": f"file://{self.repo_dir('local', size)}"}
        base = self.base_url(provider)
        name = f"bench/p{size}" if provider == "github" else f"bench/group/p{size}"
        return {
            "MELTANO_FORGE_REPO": f"{base}/{name}",
            "MELTANO_FORGE_PROVIDER": provider,
            "MELTANO_FORGE_API_URL": base + ("/api/v3" if provider == "github" else "/api/v4"),
        }

    def git_url(self, provider: str, size: str) -> str:
        """What `git clone` reads for the same project."""
        if provider == "local":
            return f"file://{self.repo_dir('local', size)}"
        return f"{self.base_url('git')}/bench/p{size}.git"

    def proxy(self, provider: str) -> LatencyProxy | None:
        """The proxy counting `provider`'s traffic (none for a local repository)."""
        return None if provider == "local" else self.proxies[provider.split("-")[0]]

    def folder(self) -> Path:
        """A new empty folder (never deleted during the run: deleting many files makes
        the next run's creates slow on some filesystems)."""
        return Path(tempfile.mkdtemp(dir=self.work))

    def add(
        self,
        scenario: str,
        provider: str,
        size: str,
        ours: Measured,
        git: float | None = None,
        **extra: Any,
    ) -> Row:
        """Record a row and print it."""
        row = Row(scenario, provider, size, int(self.rtt * 1000), *ours, git_median_s=git, **extra)
        self.rows.append(row)
        ratio = f"{row.ratio:.2f}x" if row.ratio else "-"
        value = f"  value {row.value:.1f}" if row.value is not None else ""
        print(
            f"{scenario:28} {provider:15} {size:7} {row.rtt_ms:3}ms  median {row.median_s:7.3f}s  p90 {row.p90_s:7.3f}s  "
            f"req {row.requests:4}  up {row.bytes_up:>9}  down {row.bytes_down:>10}  vs git {ratio}{value} {row.note}",
            flush=True,
        )
        return row


def git_env() -> dict[str, str]:
    """The git CLI's identity for baseline commits."""
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": AUTHOR[0],
        "GIT_AUTHOR_EMAIL": AUTHOR[1],
        "GIT_COMMITTER_NAME": AUTHOR[0],
        "GIT_COMMITTER_EMAIL": AUTHOR[1],
    }


def self_peak_mb() -> float:
    """This process's peak RSS so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def remove(path: Path) -> None:
    """Delete a tree at the end of a run."""
    shutil.rmtree(path, ignore_errors=True)
