"""`make bench`: meltano-forge against the git CLI, side by side, in one run.

Both sides reach the same bare repositories through one latency-adding proxy: the forge
doubles (standalone processes) for meltano-forge, `git http-backend` for git. The
scenarios (`bench/scenarios/`, one module each) add rows to one harness
(`bench/harness.py`); `bench/report.py` prints the tables and draws the cost curve.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench import report
from bench.harness import ROOT, Bench, Row, remove
from bench.scenarios import (
    check,
    coldstart,
    coldstart_fleet,
    commit,
    fleet,
    materialize,
    runner,
    service,
    status,
)

PROVIDERS = ("github", "gitlab", "local")
KINDS = ("github", "github-rest", "gitlab", "local")
"""What `--providers` chooses from: a step on any other is skipped."""


def plan(
    bench: Bench, quick: bool, providers: frozenset[str] = frozenset(KINDS)
) -> list[tuple[str, Callable[[], None]]]:
    """Every step of a run behind the full RTT, named for `--only`."""
    sizes = bench.sizes
    steps: list[tuple[str, Callable[[], None]]] = []

    def step(name: str, fn: Callable[..., None], *args: object) -> None:
        if not any(a in KINDS and a not in providers for a in args):
            steps.append((name, lambda: fn(bench, *args)))

    for size in sizes:
        for provider in PROVIDERS:
            step("materialize", materialize.materialize, provider, size)
    if not quick:
        for provider in ("github", "local"):
            step("curve", materialize.materialize, provider, "100000", 3)
    for size in [s for s in sizes if s != "fixture"]:
        step("status", status.status, size)
    for project in (*check.PROJECTS, "10000" if "10000" in sizes else "1000"):
        step("check", check.check, project)
    for provider in ("github", "github-rest", "gitlab", "local"):
        for count in (10,) if quick else (1, 10, 100):
            step("commit", commit.commit, provider, "1000", count)
    if not quick:
        for provider in ("github", "gitlab", "local"):
            step("curve", commit.commit, provider, "10000", 1000)
    for provider in ("local",) if quick else PROVIDERS:
        step("runner", runner.runner, provider, False)
        step("runner", runner.runner, provider, True)
    step("overhead", runner.import_time)
    step("overhead", runner.overhead, "local", False)
    step("overhead", runner.overhead, "local", True)
    if not quick:
        step("overhead", runner.overhead, "github", False)
        step("overhead", runner.overhead, "gitlab", False)
    for concurrency in (1, 10, 100) if quick else (1, 10, 100, 1000):
        step("service", service.pulls, concurrency)
    step("service", service.stampede, 200)
    step("service", service.throughput, 5 if quick else 10)
    step("coldstart", coldstart.coldstart)
    step("coldstart-fleet", coldstart_fleet.curve)
    step("fleet", fleet.fleet, "fixture", 1 if quick else 3)
    if not quick:
        step("fleet", fleet.fleet, "1000")
    for size in ("1000",) if quick else ("10000", "100000"):
        for provider in ("github",) if quick else PROVIDERS:
            step("memory", materialize.peak_memory, provider, size)
    return steps


def plan_zero_rtt(
    bench: Bench, providers: frozenset[str] = frozenset(KINDS)
) -> list[tuple[str, Callable[[], None]]]:
    """The same work without latency: what is left is our own cost."""
    steps: list[tuple[str, Callable[[], None]]] = []

    def step(name: str, fn: Callable[..., None], *args: object) -> None:
        if not any(a in KINDS and a not in providers for a in args):
            steps.append((name, lambda: fn(bench, *args)))

    for provider in PROVIDERS:
        step("materialize", materialize.materialize, provider, "1000")
    for provider in ("github", "github-rest", "gitlab", "local"):
        step("commit", commit.commit, provider, "1000", 10)
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument(
        "--quick", action="store_true", help="fewer sizes and repetitions (about 3 minutes)"
    )
    parser.add_argument("--rtt-ms", type=int, default=50)
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated steps: materialize,curve,status,check,commit,runner,overhead,"
        "service,memory,coldstart,coldstart-fleet,fleet",
    )
    parser.add_argument(
        "--providers",
        default=",".join(KINDS),
        help="comma-separated forges whose steps run (e.g. `local`); steps on none run always",
    )
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s}
    providers = frozenset(p for p in args.providers.split(",") if p)
    if providers - set(KINDS):
        parser.error(f"--providers takes {', '.join(KINDS)}")
    reps = 3 if args.quick else 5
    sizes = ["1000"] if args.quick else ["fixture", "1000", "10000"]
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="meltano-forge-bench-"))
    started = time.time()
    try:
        for rtt in [args.rtt_ms / 1000, 0.0]:
            full = rtt == args.rtt_ms / 1000
            needed = sizes if full else ["1000"]
            if full and not args.quick and (not only or only & {"curve", "memory"}):
                needed = [*needed, "100000"]
            bench = Bench(rtt, reps, needed, work / f"rtt{int(rtt * 1000)}")
            bench.sizes = sizes if full else ["1000"]
            try:
                steps = (
                    plan(bench, args.quick, providers) if full else plan_zero_rtt(bench, providers)
                )
                for name, run in steps:
                    if not only or name in only:
                        run()
            finally:
                bench.close()
            rows += bench.rows
    finally:
        remove(work)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    header = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine}; RTT {args.rtt_ms} ms (and 0 ms), "
        f"{reps} repetitions; {'quick' if args.quick else 'full'} run in {time.time() - started:.0f}s."
    )
    (results / "latest.json").write_text(
        json.dumps([{**asdict(r), "ratio": r.ratio} for r in rows], indent=1)
    )
    table = report.markdown(rows, header)
    (results / "latest.md").write_text(table)
    plotted = report.plot(rows, results / report.PLOT)
    if not args.quick and not only and providers == set(KINDS):
        if plotted:
            (ROOT / "bench" / report.PLOT).write_bytes((results / report.PLOT).read_bytes())
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
