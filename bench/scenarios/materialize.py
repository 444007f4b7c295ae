"""Materialize a project in an empty folder, against `git clone --depth 1`; and the peak
memory of the process that does it."""

from __future__ import annotations

import os
import subprocess

from bench.harness import ROOT, Bench, child_peak_rss, measure
from client.workspace import Workspace


def materialize(bench: Bench, provider: str, size: str, reps: int | None = None) -> None:
    """Branch lookup, download, check and write: one row, with git's median beside it."""
    reps = reps or bench.reps
    forge = bench.forge(provider, size)

    def ours(_: int) -> None:
        head = forge.branch("main").head
        Workspace.open(bench.folder() / "ws", forge).update("main", head, repo="bench")

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
                bench.git_url(provider, size),
                str(bench.folder() / "ws"),
            ],
            check=True,
        )

    ours(0)  # the doubles build and cache the archive once, as a forge's CDN does
    result = measure(reps, ours, bench.proxy(provider))
    baseline = measure(reps, git, None)[0]
    table = "main" if size != "100000" else "curve"
    bench.add("materialize", provider, size, result, baseline, table=table)
    forge.close()


PULL = """
import sys
from pathlib import Path
from client.workspace import Workspace
from providers.config import ForgeConfig
from providers.registry import locate, open_forge
repo, kind, api, folder = sys.argv[1:5]
forge = open_forge(ForgeConfig(locate(repo, kind or None, api or None)))
if folder:
    head = forge.branch("main").head
    Workspace.open(Path(folder), forge).update("main", head, repo="bench")
"""


def peak_memory(bench: Bench, provider: str, size: str) -> None:
    """Peak RSS of a fresh process that materializes the project (os.wait4), and of one
    that only imports the same modules and opens the forge."""
    env = bench.forge_env(provider, size)
    args = [
        env["MELTANO_FORGE_REPO"],
        env.get("MELTANO_FORGE_PROVIDER", ""),
        env.get("MELTANO_FORGE_API_URL", ""),
    ]
    code = PULL + "\n"

    def run(folder: str) -> tuple[float, float]:
        quoted = ", ".join(repr(a) for a in [*args, folder])
        return child_peak_rss(
            f"import sys; sys.argv = ['pull', {quoted}]\n" + code,
            {**os.environ, "PYTHONPATH": str(ROOT)},
        )

    base, _ = run("")
    peak, wall = run(str(bench.folder() / "ws"))
    bench.add(
        "peak RSS, materialize",
        provider,
        size,
        (wall, wall, 0, 0, 0),
        table="memory",
        value=peak,
        note=f"imports and forge alone: {base:.0f} MB",
    )
