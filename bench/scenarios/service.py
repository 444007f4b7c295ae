"""The service's archive cache: concurrent runner pulls of one SHA (cold: the forge is
asked once; warm: served from disk), a cold stampede on a new SHA, and warm throughput
measured with `wrk`."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from bench.harness import ROOT, Bench, measure
from client import sync
from client.workspace import Workspace

SIZE = "1000"
TOKEN = "bench-token"  # noqa: S105 - a throwaway token for a throwaway service
SERVE = """
import sys, uvicorn
from service.app import create_app
from service.settings import ServiceSettings
projects, db, cache, port = sys.argv[1:5]
settings = ServiceSettings(projects_file=projects, database_url=db, cache_dir=cache)
uvicorn.run(create_app(settings, deliver=False), host="127.0.0.1", port=int(port), log_level="warning")
"""


class Service:
    """`meltano-forge`'s service in its own process (uvicorn), one project: the GitHub
    double's project of SIZE files, through the proxy."""

    def __init__(self, bench: Bench, name: str) -> None:
        base = bench.base_url("github")
        projects = bench.work / f"projects-{name}.yml"
        projects.write_text(
            yaml.safe_dump(
                {
                    "projects": [
                        {
                            "name": "bench",
                            "repo": f"{base}/bench/p{SIZE}",
                            "provider": "github",
                            "api_url": base + "/api/v3",
                        }
                    ],
                    "tokens": [{"name": "r", "token": TOKEN, "role": "read"}],
                }
            )
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVE,
                str(projects),
                f"sqlite:///{bench.work / f'svc-{name}.db'}",
                str(bench.folder()),
                str(port),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.url = f"http://127.0.0.1:{port}/v1/projects/bench/archive"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def pulls(self, sha: str, concurrency: int) -> list[int]:
        """`concurrency` GETs of the archive at once; their status codes."""

        async def run() -> list[int]:
            limits = httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            )
            async with httpx.AsyncClient(limits=limits, timeout=300) as client:

                async def one() -> int:
                    response = await client.get(
                        self.url, params={"ref": sha}, headers={"Authorization": f"Bearer {TOKEN}"}
                    )
                    return response.status_code

                return list(await asyncio.gather(*(one() for _ in range(concurrency))))

        return asyncio.run(run())

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def pulls(bench: Bench, concurrency: int) -> None:
    """Cold (an empty cache) then warm pulls of one SHA by `concurrency` runners."""
    service = Service(bench, f"c{concurrency}")
    sha = bench.shas[SIZE]
    proxy = bench.proxies["github"]
    try:
        proxy.reset()
        start = time.perf_counter()
        codes = service.pulls(sha, concurrency)
        cold = time.perf_counter() - start
        traffic = proxy.reset()
        forge_requests = traffic.matching(r"/tarball/") + traffic.matching(r"/_codeload/")
        errors = sum(1 for c in codes if c != 200)
        bench.add(
            f"service cold pull x{concurrency}",
            "github",
            SIZE,
            (cold, cold, forge_requests, traffic.bytes_up, traffic.bytes_down),
            table="main" if concurrency <= 100 else "curve",
            note=f"errors {errors}",
        )

        def warm(_: int) -> None:
            codes = service.pulls(sha, concurrency)
            assert set(codes) == {200}, codes

        bench.add(
            f"service warm pull x{concurrency}",
            "github",
            SIZE,
            measure(bench.reps, warm, proxy),
            table="main" if concurrency <= 100 else "curve",
        )
    finally:
        service.close()


def stampede(bench: Bench, concurrency: int = 200) -> None:
    """`concurrency` cold GETs of a SHA no one asked for yet: forge requests and errors."""
    forge = bench.forge("github", SIZE)
    branch = f"stampede-{time.time_ns()}"
    forge.create_branch(branch, bench.shas[SIZE])
    ws = Workspace.open(bench.folder() / "ws", forge)
    ws.update(branch, bench.shas[SIZE], repo="bench")
    (ws.root / "meltano.yml").write_text((ws.root / "meltano.yml").read_text() + "# new\n")
    sha = sync.commit(ws, "a new commit").sha
    assert sha
    forge.close()
    service = Service(bench, "stampede")
    proxy = bench.proxies["github"]
    try:
        proxy.reset()
        start = time.perf_counter()
        codes = service.pulls(sha, concurrency)
        wall = time.perf_counter() - start
        traffic = proxy.reset()
        forge_requests = traffic.matching(r"/tarball/") + traffic.matching(r"/_codeload/")
        errors = sum(1 for c in codes if c != 200)
        bench.add(
            f"service cold stampede x{concurrency}",
            "github",
            SIZE,
            (wall, wall, forge_requests, traffic.bytes_up, traffic.bytes_down),
            table="service",
            value=float(errors),
            note=f"forge requests {forge_requests}, errors {errors}",
        )
    finally:
        service.close()


def throughput(bench: Bench, seconds: int = 10, connections: int = 16) -> None:
    """Warm GETs of one SHA by `wrk` (2 threads) for `seconds`: requests a second, p99."""
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (apt-get install -y wrk): throughput skipped", flush=True)
        return
    service = Service(bench, "wrk")
    sha = bench.shas[SIZE]
    try:
        assert service.pulls(sha, 1) == [200]
        out = subprocess.run(
            [
                wrk,
                "-t2",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-H",
                f"Authorization: Bearer {TOKEN}",
                f"{service.url}?ref={sha}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        service.close()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {
        m.group(1): _seconds(m.group(2)) for m in re.finditer(r"\s+(50|90|99)%\s+([\d.]+\w+)", out)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bench.add(
        f"service warm GET, wrk -c{connections}",
        "github",
        SIZE,
        (latency.get("50", 0.0), latency.get("99", 0.0), 0, 0, 0),
        table="service",
        value=rate,
        note=f"p90 {latency.get('90', 0.0) * 1000:.1f} ms, non-2xx {errors.group(1) if errors else 0}",
    )


def _seconds(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


__all__ = ["Path", "pulls", "stampede", "throughput"]
