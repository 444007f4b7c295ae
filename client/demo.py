"""`make demo`: the whole story on the embedded local forge, with the real `meltano`.

Every step runs the real `meltano-forge` command a container would run, and prints the
branch history read straight from the bare repository, so the auto-commits are visible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from dulwich.objects import Commit
from dulwich.repo import Repo

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
FORGE = DEMO / "forge" / "warehouse.git"


def say(text: str) -> None:
    """A step's explanation."""
    print("\n" + "=" * 78 + "\n" + textwrap.fill(text, 78) + "\n" + "=" * 78, flush=True)


def forge_cli(*args: str, project: str | None = None, expect: int | None = 0, **env: str) -> int:
    """Run `meltano-forge ARGS` as a runner would, and show its output."""
    environment = {**os.environ, **env}
    if project:
        environment["MELTANO_FORGE_PROJECT_DIR"] = str(DEMO / project)
    command = [sys.executable, "-c", "from service.entry import main; main()", *args]
    print(f"$ meltano-forge {' '.join(args)}", flush=True)
    code = subprocess.run(command, env=environment, cwd=ROOT, check=False).returncode  # noqa: S603
    if expect is not None and code != expect:
        print(f"unexpected exit code {code} (wanted {expect})", flush=True)
        sys.exit(1)
    return code


def history(branch: str, limit: int = 8) -> None:
    """Print a branch's commits (newest first) with the files each one changed."""
    repo = Repo(str(FORGE))
    try:
        sha = repo.refs[f"refs/heads/{branch}".encode()]  # type: ignore[index]
        print(f"--- history of {branch} (read from the bare repository) ---")
        from providers import gitobjects

        for _ in range(limit):
            commit = repo[sha]
            if not isinstance(commit, Commit):
                break
            parent = commit.parents[0] if commit.parents else None
            old_tree = gitobjects.commit_tree(repo.object_store, parent) if parent else None
            changed = sorted(gitobjects.changed_paths(repo.object_store, old_tree, commit.tree))
            headline = commit.message.decode().splitlines()[0]
            print(f"  {sha.decode()[:10]}  {headline:40.40}  {', '.join(changed)[:60]}")
            if parent is None:
                break
            sha = parent
    finally:
        repo.close()


def main() -> None:
    """Run the story."""
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    os.environ.update(
        MELTANO_FORGE_REPO=f"file://{FORGE}",
        MELTANO_FORGE_INSTALL="never",
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        MELTANO_CLI_DISABLE_VERSION_CHECK="true",
    )
    say(
        "1. `meltano-forge init` runs `meltano init` in a temporary folder and pushes it as the "
        "first commit of `main` on a brand-new local forge (a bare git repository), then creates "
        "the `development` working branch. No git binary is involved."
    )
    forge_cli("init", "--project-name", "warehouse")
    history("main")

    say(
        "2. A runner container starts with an empty folder. `meltano-forge run -- CMD` pulls the "
        "`development` branch, runs the real Meltano command, and auto-commits what it changed."
    )
    forge_cli("run", "--", "meltano", "environment", "add", "ci", project="runner-a")
    forge_cli(
        "run",
        "--",
        "meltano",
        "config",
        "set",
        "--store=meltano_yml",
        "meltano",
        "state_backend.uri",
        "systemdb",
        project="runner-b",
    )
    forge_cli("run", "--", "meltano", "environment", "add", "qa", project="runner-c")
    print("A command that changes nothing makes no commit:")
    forge_cli("run", "--", "meltano", "environment", "list", project="runner-c")
    history("development")

    say(
        "3. `main` is protected. The runner sets MELTANO_PROJECT_READONLY, so Meltano itself "
        "refuses to edit meltano.yml; the runner exits with Meltano's code and commits nothing."
    )
    code = forge_cli(
        "run",
        "--",
        "meltano",
        "environment",
        "add",
        "hotfix",
        project="runner-main",
        expect=None,
        MELTANO_FORGE_BRANCH="main",
    )
    print(f"exit code {code}; main is unchanged:")
    history("main", 2)

    say(
        "4. Two people edit the project at once. In runner A's workspace someone edits "
        "README.md by hand; meanwhile runner C commits a new environment. `meltano-forge commit` "
        "in A finds the branch moved, sees no overlap, and lands on top of C's commit (an "
        "automatic rebase). Overlapping text edits are merged three-way, or saved on a side "
        "branch with exit code 3: nothing is lost."
    )
    (DEMO / "runner-a" / "README.md").write_text("# warehouse\n\nEdited by hand in runner A.\n")
    forge_cli("run", "--", "meltano", "environment", "add", "perf", project="runner-c")
    forge_cli("commit", "-m", "Describe the project in README.md", project="runner-a")
    history("development", 3)

    say(
        "5. Personal branches: MELTANO_FORGE_USER=aj works on `development-aj`, created from "
        "`development` (not `development/aj`, which git cannot hold beside `development`)."
    )
    forge_cli(
        "run",
        "--",
        "meltano",
        "environment",
        "add",
        "aj-sandbox",
        project="runner-aj",
        MELTANO_FORGE_USER="aj",
    )
    history("development-aj", 2)

    say(
        "6. `promote` opens a pull/merge request from development to main on GitHub or GitLab. "
        "A local bare repository has no pull requests, so it says what to do instead."
    )
    forge_cli("promote", expect=2)
    forge_cli("branches", project="runner-a")
    print("\nDemo finished: every commit above was made through the forge API layer, without git.")


if __name__ == "__main__":
    main()
