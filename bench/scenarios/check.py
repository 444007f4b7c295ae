"""`meltano-forge check` on Meltano's fixture projects and on a generated project: the CLI
as a user runs it (a fresh process in a materialized workspace folder, start-up included),
and `check_project` in process (the editor's and the service's cost, warm)."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import ROOT, Bench, measure, seed_packed
from client import messages
from client.check import FolderReader, check_project
from client.workspace import Workspace
from providers.config import ForgeConfig
from providers.contract import FileMode
from providers.registry import locate, open_forge

FIXTURES = ROOT / "tests" / "fixtures" / "meltano"
PROJECTS = ("meltano-config", "meltano-manifest", "multifile_project")
"""Meltano's own fixtures (`tests/fixtures/meltano/`, MIT)."""
CLI = Path(sys.executable).parent / "meltano-forge"


def _fixture_files(name: str) -> dict[str, tuple[bytes, FileMode]]:
    folder = FIXTURES / name
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), FileMode.REGULAR)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _workspace(bench: Bench, project: str) -> tuple[Path, str]:
    """A workspace folder materialized from a local forge holding `project`, and that
    forge's `MELTANO_FORGE_REPO`, as a runner's container has them."""
    if project in PROJECTS:
        repo = bench.work / "check" / f"{project}.git"
        if not repo.exists():
            seed_packed([repo], _fixture_files(project))
        url = f"file://{repo}"
    else:
        url = bench.forge_env("local", project)["MELTANO_FORGE_REPO"]
    forge = open_forge(ForgeConfig(locate(url)))
    try:
        folder = bench.folder() / "ws"
        Workspace.open(folder, forge).update("main", forge.branch("main").head, repo="bench")
    finally:
        forge.close()
    return folder, url


def check(bench: Bench, project: str) -> None:
    """Two rows: the CLI (median and p90 of fresh processes) and `check_project` warm."""
    folder, url = _workspace(bench, project)
    files = sum(1 for p in folder.rglob("*") if p.is_file() and ".meltano-forge" not in p.parts)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELTANO_FORGE_")}
    env["MELTANO_FORGE_REPO"] = url
    expected = check_project(FolderReader(folder))

    cpu: dict[str, list[float]] = {"CLI": [], "in process": []}

    def cli(_: int) -> None:
        before = _children_cpu()
        done = subprocess.run(
            [str(CLI), "check", "--json"], cwd=folder, env=env, capture_output=True, check=False
        )
        cpu["CLI"].append(_children_cpu() - before)
        assert done.returncode == (0 if expected.ok else 9), done.stderr[-2000:]
        assert json.loads(done.stdout)["errors"] == expected.as_dict()["errors"]

    def in_process(_: int) -> None:
        before = time.process_time()
        check_project(FolderReader(folder))
        cpu["in process"].append(time.process_time() - before)

    counts = (
        f"{messages.plural(len(expected.errors), 'error')}, "
        f"{messages.plural(len(expected.warnings), 'warning')}"
    )
    label = project if project in PROJECTS else f"generated {int(project):,} files"
    for kind, run in (("CLI", cli), ("in process", in_process)):
        measured = measure(bench.reps, run, None)
        note = f"CPU {statistics.median(cpu[kind]):.3f}s; {counts}"
        bench.add(f"check, {kind}", label, str(files), measured, table="check", note=note)


def _children_cpu() -> float:
    """User and system seconds of the waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
