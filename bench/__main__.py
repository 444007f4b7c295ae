"""`make bench`: meltano-forge against the git CLI, side by side, in one run.

Both sides reach the same bare repositories through one latency-adding proxy: the forge
doubles (standalone processes) for meltano-forge, `git http-backend` for git. Nothing here
asserts a time; the tables show medians, p90s, requests, bytes and ratios.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.servers import GitHost, LatencyProxy
from client import sync
from client.workspace import Workspace
from providers import gitobjects
from providers.config import ForgeConfig
from providers.contract import FileMode, Forge
from providers.registry import locate, open_forge
from tests.forges import gitdata

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "meltano" / "meltano-manifest"
PLUGIN = "plugins:\n  utilities:\n  - name: example\n    namespace: example\n    settings:\n    - name: a_string\n"
AUTHOR = ("bench", "bench@localhost")


@dataclass
class Row:
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

    @property
    def ratio(self) -> float | None:
        return self.median_s / self.git_median_s if self.git_median_s else None


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
    for i in range(count - 20):
        layer = ("staging", "intermediate", "marts")[i % 3]
        files[f"transform/models/{layer}/group_{i % 40:02d}/model_{i:05d}.sql"] = (
            f"-- model {i}\nselect id, name, updated_at\nfrom {{{{ ref('src_{i % 97}') }}}}\nwhere id % {i + 1} = 0\n".encode(),
            FileMode.REGULAR,
        )
    for i in range(10):
        files[f"transform/seeds/seed_{i}.parquet"] = (
            bytes(rng.randrange(256) for _ in range(4096)),
            FileMode.REGULAR,
        )
    for i in range(8):
        files[f"orchestrate/scripts/task_{i}.sh"] = (
            f"#!/bin/sh\necho task {i}\n".encode(),
            FileMode.EXECUTABLE,
        )
    return files


def seed_bare(path: Path, files: dict[str, tuple[bytes, FileMode]]) -> str:
    """A bare repository holding `files` as one commit on main."""
    gitdata.init_bare(path)
    from dulwich.repo import Repo

    repo = Repo(str(path))
    try:
        store = repo.object_store
        edits = [
            gitobjects.TreeEdit(p, m, gitobjects.add_blob(store, d)) for p, (d, m) in files.items()
        ]
        tree = gitobjects.apply_edits(store, None, edits)
        sha = gitobjects.make_commit(store, tree, [], "seed", AUTHOR, when=1_700_000_000)
        gitdata.set_head(repo, "main", None, sha)
        return sha.decode()
    finally:
        repo.close()


def measure(
    reps: int, fn: Callable[[int], Any], proxy: LatencyProxy | None
) -> tuple[float, float, int, int, int]:
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


class Bench:
    """One run: repositories, servers, proxies and the rows they produce."""

    def __init__(self, rtt: float, reps: int, sizes: list[str], work: Path) -> None:
        self.rtt, self.reps, self.sizes, self.work = rtt, reps, sizes, work
        self.rows: list[Row] = []
        self.repos = work / "repos"
        self.shas: dict[str, str] = {}
        for size in sizes:
            files = project_files(size)
            for forge in ("github", "gitlab", "git"):
                name = f"bench/p{size}" if forge != "gitlab" else f"bench/group/p{size}"
                self.shas[size] = seed_bare(self.repos / forge / f"{name}.git", files)
            seed_bare(self.repos / "local" / f"p{size}.git", files)
        self.doubles = {forge: self._double(forge) for forge in ("github", "gitlab")}
        self.proxies = {forge: LatencyProxy(port, rtt) for forge, (_, port) in self.doubles.items()}
        self.git_host = GitHost(self.repos / "git")
        self.proxies["git"] = LatencyProxy(self.git_host.port, rtt)

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
        for process, _ in self.doubles.values():
            process.terminate()
            process.wait(10)
        self.git_host.stop()

    def forge(self, provider: str, size: str) -> Forge:
        if provider == "local":
            return open_forge(
                ForgeConfig(locate(f"file://{self.repos / 'local' / f'p{size}.git'}"))
            )
        kind = provider.split("-")[0]
        base = f"http://127.0.0.1:{self.proxies[kind].port}"
        name = f"bench/p{size}" if kind == "github" else f"bench/group/p{size}"
        api = base + ("/api/v3" if kind == "github" else "/api/v4")
        return open_forge(
            ForgeConfig(
                locate(f"{base}/{name}", kind, api), graphql_commits=provider == "github-graphql"
            )
        )

    def git_url(self, provider: str, size: str) -> str:
        if provider == "local":
            return f"file://{self.repos / 'local' / f'p{size}.git'}"
        return f"http://127.0.0.1:{self.proxies['git'].port}/bench/p{size}.git"

    def proxy(self, provider: str) -> LatencyProxy | None:
        return None if provider == "local" else self.proxies[provider.split("-")[0]]

    def folder(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.work))

    def add(
        self,
        scenario: str,
        provider: str,
        size: str,
        ours: tuple[float, float, int, int, int],
        git: float | None,
    ) -> None:
        row = Row(scenario, provider, size, int(self.rtt * 1000), *ours, git_median_s=git)
        self.rows.append(row)
        ratio = f"{row.ratio:.2f}x" if row.ratio else "-"
        print(
            f"{scenario:24} {provider:15} {size:8} {row.rtt_ms:3}ms  median {row.median_s:7.3f}s  p90 {row.p90_s:7.3f}s  "
            f"req {row.requests:4}  up {row.bytes_up:>10}  down {row.bytes_down:>10}  vs git {ratio}",
            flush=True,
        )

    # ---- scenarios ---------------------------------------------------------------------
    def materialize(self, provider: str, size: str) -> None:
        forge = self.forge(provider, size)

        def ours(_: int) -> None:
            head = forge.branch("main").head
            Workspace.open(self.folder() / "ws", forge).update("main", head, repo="bench")

        def git(_: int) -> None:
            subprocess.run(
                [
                    "git",
                    "clone",
                    "-q",
                    "--depth",
                    "1",
                    "--single-branch",
                    "--branch",
                    "main",
                    self.git_url(provider, size),
                    str(self.folder() / "ws"),
                ],
                check=True,
            )

        result = measure(self.reps, ours, self.proxy(provider))
        baseline = measure(self.reps, git, None)[0]
        self.add("materialize", provider, size, result, baseline)
        forge.close()

    def status(self, size: str) -> None:
        forge = self.forge("local", size)
        root = self.folder() / "ws"
        ws = Workspace.open(root, forge)
        ws.update("main", self.shas[size], repo="bench")
        manifest = ws.manifest
        clone = self.folder() / "clone"
        subprocess.run(["git", "clone", "-q", self.git_url("local", size), str(clone)], check=True)
        subprocess.run(
            ["git", "-C", str(clone), "status", "--porcelain"], check=True, capture_output=True
        )
        models = sorted(p for p in manifest.files if p.endswith(".sql"))[:10]
        for rel in models:
            for base in (root, clone):
                (base / rel).write_text((base / rel).read_text() + "-- touched\n")
        result = measure(self.reps, lambda _: ws.status(), None)
        baseline = measure(
            self.reps,
            lambda _: subprocess.run(
                ["git", "-C", str(clone), "status", "--porcelain"], check=True, capture_output=True
            ),
            None,
        )[0]
        self.add("status (10 touched)", "any", size, result, baseline)
        forge.close()

    def commit(self, provider: str, size: str, count: int) -> None:
        forge = self.forge(provider, size)
        branch = f"bench-{provider}-{count}-{int(time.time() * 1000) % 10**8}"
        forge.create_branch(branch, self.shas[size])
        root = self.folder() / "ws"
        ws = Workspace.open(root, forge)
        ws.update(branch, self.shas[size], repo="bench")
        manifest = ws.manifest
        models = sorted(p for p in manifest.files if p.endswith(".sql"))[:count]

        def ours(rep: int) -> None:
            for rel in models:
                (root / rel).write_text(f"select {rep} as rep -- {rel}\n")
            outcome = sync.commit(ws, f"bench commit {rep}")
            assert outcome.sha, outcome

        clone = self.folder() / "clone"
        subprocess.run(
            [
                "git",
                "clone",
                "-q",
                "--depth",
                "1",
                "--branch",
                "main",
                self.git_url(provider, size),
                str(clone),
            ],
            check=True,
        )
        git_branch = f"{branch}-git"
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", "-b", git_branch], check=True)

        def git(rep: int) -> None:
            for rel in models:
                (clone / rel).write_text(f"select {rep} as rep -- {rel}\n")
            env = {
                **os.environ,
                "GIT_AUTHOR_NAME": AUTHOR[0],
                "GIT_AUTHOR_EMAIL": AUTHOR[1],
                "GIT_COMMITTER_NAME": AUTHOR[0],
                "GIT_COMMITTER_EMAIL": AUTHOR[1],
            }
            subprocess.run(["git", "-C", str(clone), "add", "-A"], check=True, env=env)
            subprocess.run(
                ["git", "-C", str(clone), "commit", "-q", "-m", f"bench commit {rep}"],
                check=True,
                env=env,
            )
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(clone),
                    "-c",
                    "http.postBuffer=524288000",
                    "push",
                    "-q",
                    "origin",
                    git_branch,
                ],
                check=True,
                env=env,
                capture_output=True,
            )

        result = measure(self.reps, ours, self.proxy(provider))
        baseline = measure(self.reps, git, None)[0]
        self.add(f"commit+push {count} files", provider, size, result, baseline)
        forge.close()

    def runner(self, provider: str, changed: bool) -> None:
        size = "1000"  # the generated projects carry the `example` utility that config set edits
        forge_env = self._runner_env(provider, size)
        label = "runner: config set" if changed else "runner: no change"

        def ours(rep: int) -> None:
            cmd = (
                ["meltano", "config", "set", "example", "a_string", f"v{rep}-{time.time_ns()}"]
                if changed
                else ["meltano", "environment", "list"]
            )
            env = {**forge_env, "MELTANO_FORGE_PROJECT_DIR": str(self.folder() / "ws")}
            result = subprocess.run(
                [sys.executable, "-c", "from service.entry import main; main()", "run", "--", *cmd],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, result.stderr

        self.add(label, provider, size, measure(self.reps, ours, self.proxy(provider)), None)

    def _runner_env(self, provider: str, size: str) -> dict[str, str]:
        env = {
            **os.environ,
            "MELTANO_FORGE_INSTALL": "never",
            "MELTANO_FORGE_BRANCH": "main",
            "MELTANO_FORGE_PROTECTED_BRANCHES": "none",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
        }
        if provider == "local":
            env["MELTANO_FORGE_REPO"] = f"file://{self.repos / 'local' / f'p{size}.git'}"
            return env
        kind = provider
        base = f"http://127.0.0.1:{self.proxies[kind].port}"
        name = f"bench/p{size}" if kind == "github" else f"bench/group/p{size}"
        env.update(
            MELTANO_FORGE_REPO=f"{base}/{name}",
            MELTANO_FORGE_PROVIDER=kind,
            MELTANO_FORGE_API_URL=base + ("/api/v3" if kind == "github" else "/api/v4"),
        )
        return env

    def service_cache(self, concurrency: int) -> None:
        import uvicorn
        import yaml

        from service.app import create_app
        from service.settings import ServiceSettings

        size = "1000"
        base = f"http://127.0.0.1:{self.proxies['github'].port}"
        projects = self.work / f"projects-{concurrency}.yml"
        projects.write_text(
            yaml.safe_dump(
                {
                    "projects": [
                        {
                            "name": "bench",
                            "repo": f"{base}/bench/p{size}",
                            "provider": "github",
                            "api_url": base + "/api/v3",
                        }
                    ],
                    "tokens": [{"name": "r", "token": "bench-token", "role": "read"}],
                }
            )
        )
        settings = ServiceSettings(
            projects_file=projects,
            database_url=f"sqlite:///{self.work / f'svc-{concurrency}.db'}",
            cache_dir=self.folder(),
        )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, deliver=False), host="127.0.0.1", port=0, log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/v1/projects/bench/archive"
        sha = self.shas[size]

        def pulls(_: int) -> None:
            with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
                codes = list(
                    pool.map(
                        lambda __: (
                            httpx.get(
                                url,
                                params={"ref": sha},
                                headers={"Authorization": "Bearer bench-token"},
                                timeout=120,
                            ).status_code
                        ),
                        range(concurrency),
                    )
                )
            assert set(codes) == {200}, codes

        proxy = self.proxies["github"]
        proxy.reset()
        start = time.perf_counter()
        pulls(0)
        cold = time.perf_counter() - start
        traffic = proxy.reset()
        forge_requests = traffic.matching(r"/tarball/") + traffic.matching(r"/_codeload/")
        self.add(
            f"service cold pull x{concurrency}",
            "github",
            size,
            (cold, cold, forge_requests, traffic.bytes_up, traffic.bytes_down),
            None,
        )
        warm = measure(self.reps, pulls, proxy)
        self.add(f"service warm pull x{concurrency}", "github", size, warm, None)
        server.should_exit = True
        thread.join(10)


def markdown(rows: list[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| scenario | provider | size | RTT | median | p90 | requests | bytes up | bytes down | git median | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        git = f"{r.git_median_s:.3f}s" if r.git_median_s else "-"
        ratio = f"{r.ratio:.2f}x" if r.ratio else "-"
        lines.append(
            f"| {r.scenario} | {r.provider} | {r.size} | {r.rtt_ms} ms | {r.median_s:.3f}s | {r.p90_s:.3f}s | {r.requests} | {r.bytes_up} | {r.bytes_down} | {git} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument(
        "--quick", action="store_true", help="fewer sizes and repetitions (about 2 minutes)"
    )
    parser.add_argument("--rtt-ms", type=int, default=50)
    args = parser.parse_args()
    reps = 3 if args.quick else 5
    sizes = ["1000"] if args.quick else ["fixture", "1000", "10000"]
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    all_rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="meltano-forge-bench-"))
    started = time.time()
    try:
        for rtt in [args.rtt_ms / 1000, 0.0]:
            full = rtt == args.rtt_ms / 1000
            bench = Bench(rtt, reps, sizes if full else ["1000"], work / f"rtt{int(rtt * 1000)}")
            try:
                for size in bench.sizes:
                    for provider in ("github", "gitlab", "local"):
                        bench.materialize(provider, size)
                for size in [s for s in bench.sizes if s in ("1000", "10000")] if full else []:
                    bench.status(size)
                counts = ((10,) if args.quick else (1, 10, 100)) if full else (10,)
                for provider in ("github", "github-graphql", "gitlab", "local"):
                    for count in counts:
                        bench.commit(provider, "1000", count)
                if full:
                    for provider in ("local",) if args.quick else ("github", "gitlab", "local"):
                        bench.runner(provider, changed=False)
                        bench.runner(provider, changed=True)
                    for concurrency in (1, 10, 100):
                        bench.service_cache(concurrency)
            finally:
                bench.close()
            all_rows += bench.rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    header = f"Measured {time.strftime('%Y-%m-%d')} on {machine}; RTT {args.rtt_ms} ms (and 0 ms), {reps} repetitions; {'quick' if args.quick else 'full'} run in {time.time() - started:.0f}s."
    (results / "latest.json").write_text(
        json.dumps([{**asdict(r), "ratio": r.ratio} for r in all_rows], indent=1)
    )
    table = markdown(all_rows, header)
    (results / "latest.md").write_text(table)
    if not args.quick:
        readme = ROOT / "bench" / "README.md"
        intro = (
            readme.read_text().split("<!-- results -->")[0]
            if readme.exists()
            else "# Benchmarks\n\n"
        )
        readme.write_text(intro + "<!-- results -->\n" + table)
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
