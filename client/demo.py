"""`make demo`: the whole story on the embedded local forge, with the real `meltano`.

Every step runs the real `meltano-forge` command a container or a person would type,
echoed exactly (quoted as a shell would need it); its own output, Meltano's included, is
indented beneath it, apart from the narration. Branch histories are read straight from the
bare repository, so the auto-commits are visible.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from dulwich.objects import Commit
from dulwich.repo import Repo

from client.messages import plural
from providers import gitobjects

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
FORGE = DEMO / "forge" / "warehouse.git"
TTY = sys.stdout.isatty()


def _dim(text: str) -> str:
    return f"\033[2m{text}\033[0m" if TTY else text


def _bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if TTY else text


def say(step: str, text: str) -> None:
    """A step's narration, flush left."""
    print("\n" + _bold(step) + "\n" + textwrap.fill(" ".join(text.split()), 88), flush=True)


def forge_cli(*args: str, project: str | None = None, expect: int | None = 0, **env: str) -> int:
    """Run `meltano-forge ARGS` as a person would type it; its output is indented below."""
    shown_env = dict(env)
    if project:
        shown_env["MELTANO_FORGE_PROJECT_DIR"] = os.path.relpath(DEMO / project, ROOT)
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in shown_env.items())
    print(f"\n$ {prefix + ' ' if prefix else ''}{shlex.join(['meltano-forge', *args])}")
    environment = {**os.environ, **shown_env}
    command = [sys.executable, "-c", "from service.entry import main; main()", *args]
    result = subprocess.run(  # noqa: S603 - our own CLI
        command, env=environment, cwd=ROOT, check=False, capture_output=True, text=True
    )
    for line in (result.stderr + result.stdout).rstrip("\n").splitlines():
        print(_dim("    " + line))
    if expect is not None and result.returncode != expect:
        print(f"unexpected exit code {result.returncode} (wanted {expect})", flush=True)
        sys.exit(1)
    if result.returncode:
        print(f"    (exit code {result.returncode})")
    sys.stdout.flush()
    return result.returncode


def history(branch: str, limit: int = 10) -> None:
    """Print a branch's commits, newest first, with every file each one changed."""
    repo = Repo(str(FORGE))
    try:
        sha = repo.refs[gitobjects.branch_ref(branch)]
        print(f"\n  history of {branch}, read from the bare repository:")
        for _ in range(limit):
            commit = repo[sha]
            if not isinstance(commit, Commit):
                break
            parent = commit.parents[0] if commit.parents else None
            old_tree = gitobjects.commit_tree(repo.object_store, parent) if parent else None
            changed = sorted(gitobjects.changed_paths(repo.object_store, old_tree, commit.tree))
            headline = commit.message.decode().splitlines()[0]
            author = commit.author.decode().split(" <")[0]
            merge = " (merge)" if len(commit.parents) > 1 else ""
            print(f"  {sha.decode()[:10]}  {headline}{merge}  [{author}]")
            print(f"              {plural(len(changed), 'file')}: {', '.join(changed)}")
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
    print(f"The forge for this demo is a bare git repository: {os.path.relpath(FORGE, ROOT)}")
    say(
        "1. A new project",
        "`init` runs `meltano init` in a temporary folder, pushes it as the first commit of "
        "`main` on a brand-new local forge, creates the `development` working branch, and "
        "materializes it in your folder. No git binary is involved anywhere.",
    )
    forge_cli("init", "--project-name", "warehouse", project="workstation")
    history("main")

    say(
        "2. Runners",
        "A runner container starts with an empty folder. `run -- CMD` pulls `development`, "
        "runs the real Meltano command, and commits what it changed, with a message that "
        "names the command and the files (values given to `config set` are left out).",
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
    print("\nA command that changes nothing makes no commit:")
    forge_cli("run", "--", "meltano", "environment", "list", project="runner-b")
    history("development", 4)

    say(
        "3. Protected main",
        "`main` is read-only. The runner sets MELTANO_PROJECT_READONLY, so Meltano itself "
        "refuses to edit meltano.yml; the runner exits with Meltano's code and commits nothing.",
    )
    forge_cli(
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

    say(
        "4. A person at a workstation",
        "Your folder from step 1 is behind: `pull` brings in the runners' commits. You edit "
        "README.md; `status` and `diff` show it. Meanwhile a runner commits a new "
        "environment, so your `commit` finds the branch moved, sees no overlap, and lands on "
        "top (an automatic rebase). Without -m it writes a message from the files.",
    )
    forge_cli("pull", project="workstation")
    readme = DEMO / "workstation" / "README.md"
    readme.write_text(readme.read_text() + "\nEdited by hand at a workstation.\n")
    forge_cli("status", project="workstation")
    forge_cli("diff", project="workstation")
    forge_cli("run", "--", "meltano", "environment", "add", "perf", project="runner-c")
    forge_cli("commit", project="workstation")
    history("development", 3)

    say(
        "5. Personal branches",
        "MELTANO_FORGE_USER=aj works on `development-aj`, created from `development` (not "
        "`development/aj`, which git cannot hold beside `development`).",
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
        "6. Promote",
        "On GitHub or GitLab, `promote` opens (or reuses) a pull or merge request from "
        "`development` to `main`. A local repository has no pull requests, so the promotion "
        "is applied at once: a fast-forward, or a merge commit when both branches moved.",
    )
    forge_cli("promote", project="workstation")
    history("main", 3)
    forge_cli("branches", project="workstation")
    print("\nDone: every commit above went through the forge API layer, without git.")


if __name__ == "__main__":
    main()
