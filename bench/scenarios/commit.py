"""Commit and push N edited files, against `git add -A && git commit && git push`."""

from __future__ import annotations

import subprocess
import time

from bench.harness import Bench, git_env, measure
from client import sync
from client.workspace import Workspace


def commit(bench: Bench, provider: str, size: str, count: int) -> None:
    """One row: our commit (status, change set, one commit request) and git's."""
    forge = bench.forge(provider, size)
    branch = f"bench-{provider}-{count}-{int(time.time() * 1000) % 10**8}"
    forge.create_branch(branch, bench.shas[size])
    root = bench.folder() / "ws"
    ws = Workspace.open(root, forge)
    ws.update(branch, bench.shas[size], repo="bench")
    models = sorted(p for p in ws.manifest.files if p.endswith(".sql"))[:count]

    def ours(rep: int) -> None:
        for rel in models:
            (root / rel).write_text(f"select {rep} as rep -- {rel}\n")
        outcome = sync.commit(ws, f"bench commit {rep}")
        assert outcome.sha, outcome

    clone = bench.folder() / "clone"
    git_url = bench.git_url(provider, size)
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", "--branch", "main", git_url, str(clone)],
        check=True,
    )
    git_branch = f"{branch}-git"
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "-b", git_branch], check=True)
    env = git_env()

    def git(rep: int) -> None:
        for rel in models:
            (clone / rel).write_text(f"select {rep} as rep -- {rel}\n")
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

    result = measure(bench.reps, ours, bench.proxy(provider))
    baseline = measure(bench.reps, git, None)[0]
    table = "main" if count <= 100 else "curve"
    bench.add(f"commit+push {count} files", provider, size, result, baseline, table=table)
    forge.close()
