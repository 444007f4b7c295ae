"""`coldstart`: from a container's start to the user's command, with real plugins.

tap-jsonl (an SDK extractor) and target-jsonl from the package index, on a local forge.
Every container gets a fresh project folder, a fresh HOME and a fresh uv and pip cache;
containers of one image put the project at one path, so each case here uses one fixed
path, emptied between repetitions, and the concurrent runners get their own folder at
that path through a private mount namespace (`unshare -m`, as root), as containers do.

Cases, side by side: (a) plain Meltano, `meltano install` then the command; (b)
meltano-forge with no plugin cache; (c) meltano-forge with a warm plugin cache; (d) a
baked image: the command alone where the plugins are installed, and meltano-forge on
environments baked outside the project folder (`MELTANO_SYS_DIR_ROOT`); (e) a `config set`
and then the next run. Each row gives the time until the command starts and the whole
run; (c)'s phases and a cProfile of its runner go to `bench/results/coldstart-*.txt`.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Bench, seed_packed
from providers.contract import FileMode

SIZE = "tap-jsonl+target-jsonl"
RESULTS = ROOT / "bench" / "results"
PLUGINS = ("tap-jsonl", "target-jsonl")
MELTANO_YML = b"""version: 1
default_environment: dev
project_id: coldstart-bench
environments:
- name: dev
plugins:
  extractors:
  - name: tap-jsonl
    namespace: tap_jsonl
    pip_url: tap-jsonl==0.3.1
    executable: tap-jsonl
    config:
      path: data/people.jsonl
      stream_name: people
      primary_keys: [id]
  loaders:
  - name: target-jsonl
    namespace: target_jsonl
    pip_url: target-jsonl==0.1.4
    executable: target-jsonl
    config:
      destination_path: out
"""
DATA = b"".join(b'{"id": %d, "name": "person %d"}\n' % (i, i) for i in range(1000))
FILES = {
    "meltano.yml": (MELTANO_YML, FileMode.REGULAR),
    "data/people.jsonl": (DATA, FileMode.REGULAR),
    "out/.keep": (b"", FileMode.REGULAR),
    ".gitignore": (b"/.meltano\n/out/*.jsonl\n.env\n", FileMode.REGULAR),
}
RUN = ["run", *PLUGINS]
ELT = ["meltano", *RUN]
ENTRY = [sys.executable, "-c", "from service.entry import main; main()"]


class Setup:
    """One coldstart run's repository, folders and environment."""

    def __init__(self, bench: Bench) -> None:
        self.work = bench.work / "coldstart"
        self.repo = self.work / "repo.git"
        seed_packed([self.repo], FILES)
        self.project = self.work / "container" / "project"  # one path, as in an image
        self.cache = self.work / "plugin-cache"
        self.baked = self.work / "baked-meltano"
        self.ready = self.work / "ready"
        """(d)'s folder: plugins installed there once, before the measurements."""
        self.scratch = self.work / "scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        """A container's environment: fresh HOME and package caches every time."""
        home = Path(tempfile.mkdtemp(dir=self.scratch, prefix="home-"))
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MELTANO_", "UV_CACHE", "PIP_CACHE"))
        }
        return {
            **base,
            "HOME": str(home),
            "UV_CACHE_DIR": str(home / "uv-cache"),
            "PIP_CACHE_DIR": str(home / "pip-cache"),
            "UV_NATIVE_TLS": "true",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
            "MELTANO_FORGE_REPO": f"file://{self.repo}",
            "MELTANO_FORGE_BRANCH": "main",
            "MELTANO_FORGE_PROTECTED_BRANCHES": "none",
            "MELTANO_FORGE_INSTALL": "auto",
            "MELTANO_FORGE_PROJECT_DIR": str(self.project),
            **extra,
        }

    def fresh(self) -> None:
        """An empty project folder at the image's one path."""
        shutil.rmtree(self.project, ignore_errors=True)
        self.project.mkdir(parents=True)

    def plain_copy(self, folder: Path | None = None) -> None:
        """The project's files as plain Meltano would find them in a fresh folder."""
        folder = folder or self.project
        shutil.rmtree(folder, ignore_errors=True)
        for rel, (data, _) in FILES.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)


def forge_run(setup: Setup, cmd: list[str], **extra: str) -> tuple[float, dict[str, Any]]:
    """`meltano-forge --json run -- CMD`: wall seconds and its report."""
    started = time.perf_counter()
    result = subprocess.run(
        [*ENTRY, "--json", "run", "--", *cmd],
        cwd=ROOT,
        env=setup.env(**extra),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return wall, json.loads(result.stdout)


def meltano(setup: Setup, args: list[str], folder: Path | None = None, **extra: str) -> float:
    """Plain `meltano ARGS` in `folder` (the project path by default): wall seconds."""
    started = time.perf_counter()
    result = subprocess.run(
        ["meltano", *args],
        cwd=folder or setup.project,
        env=setup.env(**extra),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return time.perf_counter() - started


Sample = tuple[float, float, int, int]
"""Seconds until the command starts, the whole run, installs, restores."""


def counted(report: dict[str, Any]) -> tuple[int, int]:
    actions = [p["action"] for p in report["plugins"]]
    return actions.count("installed"), actions.count("restored")


def case_a(setup: Setup) -> Sample:
    setup.plain_copy()
    install = meltano(setup, ["install"])
    command = meltano(setup, RUN)
    return install, install + command, len(PLUGINS), 0


def case_b(setup: Setup) -> Sample:
    setup.fresh()
    wall, report = forge_run(setup, ELT)
    return report["ready_seconds"], wall, *counted(report)


def case_c(setup: Setup) -> Sample:
    setup.fresh()
    wall, report = forge_run(setup, ELT, MELTANO_FORGE_PLUGIN_CACHE=str(setup.cache))
    return report["ready_seconds"], wall, *counted(report)


def case_d(setup: Setup) -> Sample:
    """The command alone in a folder whose plugins are installed."""
    return 0.0, meltano(setup, RUN, setup.ready), 0, 0


def case_d_forge(setup: Setup) -> Sample:
    setup.fresh()
    wall, report = forge_run(setup, ELT, MELTANO_SYS_DIR_ROOT=str(setup.baked))
    return report["ready_seconds"], wall, *counted(report)


def case_e(setup: Setup, rep: int) -> Sample:
    """In a workspace that has run before: `config set`, then the next run."""
    forge_run(setup, ["meltano", "config", "set", "tap-jsonl", "stream_name", f"people{rep}"])
    wall, report = forge_run(setup, ELT)
    return report["ready_seconds"], wall, *counted(report)


def coldstart(bench: Bench) -> None:
    """The five cases, repetitions interleaved so the machine's drift hits all alike."""
    setup = Setup(bench)
    reps = int(os.environ.get("COLDSTART_REPS", "3"))
    # Warm the cache and bake the environments once, outside the measurements.
    setup.fresh()
    forge_run(setup, ELT, MELTANO_FORGE_PLUGIN_CACHE=str(setup.cache))
    setup.plain_copy()
    meltano(setup, ["install"], MELTANO_SYS_DIR_ROOT=str(setup.baked))
    setup.plain_copy(setup.ready)
    meltano(setup, ["install"], setup.ready)
    cases: dict[str, Callable[[int], Sample]] = {
        "(a) plain meltano: install + run": lambda _: case_a(setup),
        "(b) meltano-forge, no plugin cache": lambda _: case_b(setup),
        "(c) meltano-forge, warm plugin cache": lambda _: case_c(setup),
        "(d) baked: the command alone": lambda _: case_d(setup),
        "(d') meltano-forge on a baked image": lambda _: case_d_forge(setup),
    }
    samples: dict[str, list[Sample]] = {name: [] for name in cases}
    for rep in range(reps):
        for name, run in cases.items():
            samples[name].append(run(rep))
    setup.fresh()
    forge_run(setup, ELT)
    samples["(e) config set, then the next run"] = [case_e(setup, rep) for rep in range(reps)]
    for name, values in samples.items():
        _row(bench, name, values)
    _profile(setup)
    _concurrent(bench, setup)
    (RESULTS / "coldstart.md").write_text(table(bench))


def _row(bench: Bench, name: str, values: list[Sample]) -> None:
    ready = statistics.median(v[0] for v in values)
    whole = sorted(v[1] for v in values)
    installs = max(v[2] for v in values)
    restores = max(v[3] for v in values)
    bench.add(
        f"coldstart {name}",
        "local",
        SIZE,
        (
            statistics.median(whole),
            whole[min(len(whole) - 1, round(0.9 * (len(whole) - 1)))],
            0,
            0,
            0,
        ),
        table="coldstart",
        value=ready,
        note=f"installs {installs}, restores {restores}",
    )


def _profile(setup: Setup) -> None:
    """Case (c) once more: its phases from the report, and a cProfile of the runner."""
    setup.fresh()
    profile = RESULTS / "coldstart-c.prof"
    env = setup.env(MELTANO_FORGE_PLUGIN_CACHE=str(setup.cache))
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import cProfile, sys; from service.entry import main; sys.argv[0] = 'meltano-forge';"
            f"cProfile.run('main()', {str(profile)!r})",
            "--json",
            "run",
            "--",
            *ELT,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    out = io.StringIO()
    if profile.exists():
        pstats.Stats(str(profile), stream=out).sort_stats("cumulative").print_stats(25)
    phases = [f"wall {wall:.2f}s, command started at {report.get('ready_seconds', 0):.2f}s"]
    phases += [
        f"  {p['type']}/{p['name']}: {p['action']} in {p['seconds']:.2f}s"
        for p in report.get("plugins", [])
    ]
    (RESULTS / "coldstart-profile.txt").write_text("\n".join(phases) + "\n\n" + out.getvalue())


def _same(env: dict[str, str], _folder: Path) -> dict[str, str]:
    return env


def boxed_runs(
    setup: Setup, count: int, env: Callable[[Path], dict[str, str]], timeout: float
) -> list[dict[str, Any]]:
    """`count` cold runners at once, each in a fresh folder bind-mounted at the project's
    one path (a private mount namespace each, as containers are), running the ELT command
    with `--json`; their reports. `env` gives each its environment from its folder."""
    setup.project.mkdir(parents=True, exist_ok=True)
    folders = [Path(tempfile.mkdtemp(dir=setup.scratch, prefix="box-")) for _ in range(count)]
    runners = [
        subprocess.Popen(
            [
                "unshare",
                "-m",
                "sh",
                "-c",
                f'mount --bind "$0" {setup.project} && exec "$@"',
                str(folder),
                sys.executable,
                "-c",
                "from service.entry import main; main()",
                "--json",
                "run",
                "--",
                *ELT,
            ],
            cwd=ROOT,
            env=env(folder),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in folders
    ]
    reports: list[dict[str, Any]] = []
    for runner in runners:
        out, err = runner.communicate(timeout=timeout)
        assert runner.returncode == 0, err[-4000:]
        reports.append(json.loads(out))
    return reports


def _concurrent(bench: Bench, setup: Setup) -> None:
    """1..N cold runners at once on an empty shared cache, each with its own folder at
    the one path (a private mount namespace each): installs counted."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return
    for count in (1, 2, 4):
        cache = setup.work / f"cache-{count}"
        shutil.rmtree(cache, ignore_errors=True)
        setup.project.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        shared = setup.env(MELTANO_FORGE_PLUGIN_CACHE=str(cache))
        reports = boxed_runs(setup, count, functools.partial(_same, shared), 1800)
        wall = time.perf_counter() - started
        installs = sum(counted(r)[0] for r in reports)
        restores = sum(counted(r)[1] for r in reports)
        ready = sorted(r["ready_seconds"] for r in reports)
        bench.add(
            f"coldstart concurrent x{count}",
            "local",
            SIZE,
            (wall, ready[-1], 0, 0, 0),
            table="coldstart",
            value=ready[-1],
            note=f"installs {installs}, restores {restores}",
        )


def table(bench: Bench) -> str:
    """The coldstart rows as the Markdown table bench/README.md shows."""
    lines = [
        "| case | until the command starts (median) | whole run (median) | p90 | installs, restores per run |",
        "|---|---|---|---|---|",
    ]
    for r in bench.rows:
        if r.table == "coldstart":
            lines.append(
                f"| {r.scenario.removeprefix('coldstart ')} | {r.value:.2f}s | {r.median_s:.2f}s | {r.p90_s:.2f}s | {r.note} |"
            )
    return "\n".join(lines) + "\n"
