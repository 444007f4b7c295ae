"""The runner's whole lifecycle with the real `meltano`, its request budget, and its
overhead: wall time minus the same `meltano` command alone in a ready folder."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import ROOT, Bench, measure

SIZE = "1000"  # the generated projects carry the `example` utility that config set edits


def _env(bench: Bench, provider: str, folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MELTANO_FORGE_INSTALL": "never",
        "MELTANO_FORGE_BRANCH": "main",
        "MELTANO_FORGE_PROTECTED_BRANCHES": "none",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
        "MELTANO_FORGE_PROJECT_DIR": str(folder),
        **bench.forge_env(provider, SIZE),
    }


def _command(changed: bool, rep: int) -> list[str]:
    if changed:
        return ["meltano", "config", "set", "example", "a_string", f"v{rep}-{time.time_ns()}"]
    return ["meltano", "environment", "list"]


def _run(bench: Bench, provider: str, folder: Path, cmd: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from service.entry import main; main()", "run", "--", *cmd],
        cwd=ROOT,
        env=_env(bench, provider, folder),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def runner(bench: Bench, provider: str, changed: bool) -> None:
    """A container's start: a fresh folder each time (materialize, run, commit)."""
    label = "runner: config set" if changed else "runner: no change"

    def ours(rep: int) -> None:
        _run(bench, provider, bench.folder() / "ws", _command(changed, rep))

    bench.add(label, provider, SIZE, measure(bench.reps, ours, bench.proxy(provider)))


def overhead(bench: Bench, provider: str, changed: bool) -> None:
    """`meltano-forge run -- CMD` in a ready (materialized, up-to-date) folder against CMD
    alone in another ready folder, repetitions interleaved so drift hits both alike."""
    ours_dir, alone_dir = bench.folder() / "ws", bench.folder() / "ws"
    for folder in (ours_dir, alone_dir):
        _run(bench, provider, folder, ["meltano", "environment", "list"])
    plain = {
        k: v
        for k, v in _env(bench, provider, alone_dir).items()
        if not k.startswith("MELTANO_FORGE_")
    }
    ours: list[float] = []
    alone: list[float] = []
    proxy = bench.proxy(provider)
    requests = 0
    for rep in range(bench.reps):
        if proxy:
            proxy.reset()
        start = time.perf_counter()
        _run(bench, provider, ours_dir, _command(changed, rep))
        ours.append(time.perf_counter() - start)
        if proxy:
            requests = len(proxy.reset().requests)
        start = time.perf_counter()
        subprocess.run(
            _command(changed, rep), cwd=alone_dir, env=plain, check=True, capture_output=True
        )
        alone.append(time.perf_counter() - start)
    median, baseline = statistics.median(ours), statistics.median(alone)
    ours.sort()
    bench.add(
        f"runner overhead: {'config set' if changed else 'no change'}",
        provider,
        SIZE,
        (median, ours[min(len(ours) - 1, round(0.9 * (len(ours) - 1)))], requests, 0, 0),
        table="runner",
        value=median - baseline,
        note=f"meltano alone {baseline:.3f}s",
    )


def import_time(bench: Bench) -> None:
    """The CLI's start-up: wall time of importing it, and its heaviest imports."""
    code = "from service.entry import main"
    wall = measure(
        bench.reps,
        lambda _: subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True),
        None,
    )
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    rows = []
    for line in trace.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(3)) <= 6:
            rows.append((int(match.group(2)), match.group(4)))
    top = ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in sorted(rows, reverse=True)[:6])
    bench.add(
        "CLI import", "any", "-", wall, table="runner", value=wall[0], note=f"cumulative: {top}"
    )
