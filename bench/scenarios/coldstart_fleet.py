"""`coldstart-fleet`: 1 to 20 cold containers at once, with real plugins, and what they cost.

The `coldstart` project (tap-jsonl and target-jsonl from the package index, a 1,000-record
`meltano run`) on the GitHub double behind the bench's latency proxy. Every container is
cold: its own folder at the image's one project path (a private mount namespace each, as
root), a fresh HOME and fresh uv and pip caches, started together. Two modes:

- **service**: the runners hold a service token; the service (its own process, a fresh
  archive cache and a fresh `MELTANO_FORGE_SERVICE_PLUGIN_CACHE` for every fleet) reaches
  the forge through the proxy, and the runners reach the service through a second,
  latency-free proxy that counts their requests;
- **direct, no plugin cache**: the runners talk to the forge themselves, and each installs.

Each row: the runners' time until the command starts (`ready_seconds`, from the start of
`run`), median and p90 across the fleet; the fleet's wall time until the last is done;
archive requests the forge saw; requests to the service; installs and restores.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml

from bench.harness import ROOT, Bench, seed_packed
from bench.scenarios.coldstart import FILES, SIZE, Setup, boxed_runs
from bench.servers import LatencyProxy

COUNTS = (1, 2, 5, 10, 20)
TOKEN = "fleet-bench-token"  # noqa: S105 - a throwaway token for a throwaway service
REPO = "bench/coldstart-fleet"
ARCHIVES = r"/tarball/|/_codeload/"
RESULTS = ROOT / "bench" / "results"
SERVE = """
import sys, uvicorn
from service.app import create_app
from service.settings import ServiceSettings
projects, db, cache, plugins, port = sys.argv[1:6]
settings = ServiceSettings(
    projects_file=projects, database_url=db, cache_dir=cache, service_plugin_cache=plugins
)
uvicorn.run(create_app(settings, deliver=False), host="127.0.0.1", port=int(port), log_level="warning")
"""


class FleetService:
    """The service in its own process, on the GitHub double's project through the proxy,
    behind a latency-free proxy of its own that counts the runners' requests."""

    def __init__(self, bench: Bench, work: Path) -> None:
        base = bench.base_url("github")
        projects = work / "projects.yml"
        projects.write_text(
            yaml.safe_dump(
                {
                    "projects": [
                        {
                            "name": "bench",
                            "repo": f"{base}/{REPO}",
                            "provider": "github",
                            "api_url": base + "/api/v3",
                            "protected_branches": [],
                            "working_branch": "main",
                        }
                    ],
                    "tokens": [{"name": "runners", "token": TOKEN, "role": "write"}],
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
                f"sqlite:///{work / 'service.db'}",
                str(work / "archives"),
                str(work / "plugin-envs"),
                str(port),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.proxy = LatencyProxy(port, 0.0)
        self.url = f"http://127.0.0.1:{self.proxy.port}/v1/projects/bench"

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def curve(bench: Bench) -> None:
    """Fleets of every size in both modes; rows in the `coldstart-fleet` table."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("coldstart-fleet: needs root and unshare (a mount namespace per container)")
        return
    setup = Setup(bench)
    seed_packed([bench.repo_dir("github", "x").parent / "coldstart-fleet.git"], FILES)
    base = bench.base_url("github")
    counts = [int(c) for c in os.environ.get("FLEET_COUNTS", "").split(",") if c] or COUNTS
    for count in counts:
        work = Path(tempfile.mkdtemp(dir=bench.work, prefix=f"fleet-{count}-"))
        service = FleetService(bench, work)
        try:
            _fleet(bench, setup, count, "service", service)
        finally:
            service.close()
        direct = {
            "MELTANO_FORGE_REPO": f"{base}/{REPO}",
            "MELTANO_FORGE_PROVIDER": "github",
            "MELTANO_FORGE_API_URL": base + "/api/v3",
        }
        _fleet(bench, setup, count, "direct", None, direct)
    (RESULTS / "coldstart-fleet.md").write_text(table(bench))


def _fleet(
    bench: Bench,
    setup: Setup,
    count: int,
    mode: str,
    service: FleetService | None,
    direct: dict[str, str] | None = None,
) -> None:
    """`count` cold containers at once: one row."""
    forge = bench.proxies["github"]
    forge.reset()
    if service is not None:
        service.proxy.reset()
        extra = {
            "MELTANO_FORGE_REPO": service.url,
            "MELTANO_FORGE_TOKEN": TOKEN,
            "MELTANO_FORGE_PROVIDER": "",
            "MELTANO_FORGE_API_URL": "",
        }
    else:
        extra = direct or {}
    started = time.perf_counter()
    reports = boxed_runs(
        setup,
        count,
        lambda folder: {
            k: v
            for k, v in setup.env(
                **extra, MELTANO_FORGE_WORKSPACE_ID=folder.name, MELTANO_VENV_BACKEND="uv"
            ).items()
            if v
        },
        3600,
    )
    wall = time.perf_counter() - started
    actions = Counter(p["action"] for r in reports for p in r["plugins"])
    ready = sorted(r["ready_seconds"] for r in reports)
    archives = forge.reset().matching(ARCHIVES)
    asked = service.proxy.reset().requests if service is not None else []
    by_kind = Counter(_kind(r) for r in asked)
    note = (
        f"installs {actions['installed']}, restores {actions['restored']}; "
        f"forge archives {archives}; service requests {len(asked)}"
        + (f" ({', '.join(f'{k} {n}' for k, n in sorted(by_kind.items()))})" if asked else "")
    )
    bench.add(
        f"fleet x{count} {mode}",
        "github" if mode == "direct" else "service",
        SIZE,
        (statistics.median(ready), _p90(ready), archives, 0, 0),
        table="coldstart-fleet",
        value=wall,
        note=note,
    )


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def _kind(request: str) -> str:
    """A service request by what it is for."""
    method, _, path = request.partition(" ")
    path = path.split("?")[0]
    if "/plugin-envs/leases" in path:
        return "leases"
    if "/plugin-envs/" in path:
        return f"{method} entry"
    if path.endswith("/archive"):
        return "archive"
    return "other"


def table(bench: Bench) -> str:
    """The fleet rows as bench/README.md's cost-curve table."""
    lines = [
        "| containers | mode | command starts (median) | p90 | all done | forge archives | "
        "service requests | installs / restores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in bench.rows:
        if r.table != "coldstart-fleet":
            continue
        count, mode = r.scenario.removeprefix("fleet x").split(" ", 1)
        parts = dict(p.split(" ", 1) for p in r.note.replace(";", ",").split(", ") if " " in p)
        service = r.note.partition("service requests ")[2] if mode == "service" else "-"
        lines.append(
            f"| {count} | {mode} | {r.median_s:.1f} s | {r.p90_s:.1f} s | {r.value or 0:.1f} s | "
            f"{r.requests} | {service} | {parts.get('installs', '?')} / "
            f"{parts.get('restores', '?')} |"
        )
    return "\n".join(lines) + "\n"
