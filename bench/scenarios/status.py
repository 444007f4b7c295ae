"""`status` after editing 10 files, against `git status --porcelain`."""

from __future__ import annotations

import subprocess

from bench.harness import Bench, measure
from client.workspace import Workspace


def status(bench: Bench, size: str) -> None:
    """Both sides warmed once after the edits (git refreshes its index, we keep our
    walk), then measured."""
    forge = bench.forge("local", size)
    root = bench.folder() / "ws"
    ws = Workspace.open(root, forge)
    ws.update("main", bench.shas[size], repo="bench")
    clone = bench.folder() / "clone"
    subprocess.run(["git", "clone", "-q", bench.git_url("local", size), str(clone)], check=True)
    git_status = ["git", "-C", str(clone), "status", "--porcelain"]
    subprocess.run(git_status, check=True, capture_output=True)
    models = sorted(p for p in ws.manifest.files if p.endswith(".sql"))[:10]
    for rel in models:
        for base in (root, clone):
            (base / rel).write_text((base / rel).read_text() + "-- touched\n")
    ws.status()
    subprocess.run(git_status, check=True, capture_output=True)
    result = measure(bench.reps, lambda _: ws.status(), None)
    baseline = measure(
        bench.reps, lambda _: subprocess.run(git_status, check=True, capture_output=True), None
    )[0]
    changes = ws.status()
    assert len(changes.changes) == 10, changes
    bench.add("status (10 touched)", "any", size, result, baseline, note=f"hashed {changes.hashed}")
    forge.close()
