"""`meltano init` into an empty repository: run Meltano in a temporary folder, push what it
wrote as the first commit of the default branch, and create the working branch. The CLI's
`init` and the web UI's initialization screen both call `init_repository`."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from client.guard import screen
from client.manifest import Manifest
from client.workspace import Workspace
from providers.contract import Forge
from providers.errors import AlreadyExists, InvalidRequest


@dataclass(frozen=True)
class Initialized:
    """What `init_repository` pushed."""

    default_branch: str
    """The branch that received the first commit."""
    sha: str
    """The first commit."""
    files: tuple[str, ...]
    """Repository paths it holds."""
    working_branch: str
    """The working branch, created at the first commit."""


def init_repository(
    forge: Forge,
    *,
    meltano_bin: str,
    project_name: str,
    working_branch: str,
    project_path: str = "",
    repo: str = "",
    before_push: Callable[[list[str]], object] | None = None,
) -> Initialized:
    """Fill an empty repository with a new Meltano project; refuses a repository with
    commits, changing nothing. `before_push` sees the project's paths first and may
    refuse them (e.g. when the folder they will be materialized in holds others)."""
    info = forge.repository()
    if not info.empty:
        msg = f"The repository already has commits (default branch '{info.default_branch}')"
        raise InvalidRequest(msg, "init only fills an empty repository; use `pull` instead")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / project_name
        try:
            result = subprocess.run(  # noqa: S603 - meltano with our own arguments
                [meltano_bin, "init", str(folder), "--no-usage-stats"],
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            msg = f"`{meltano_bin}` was not found"
            raise InvalidRequest(
                msg, "Install Meltano (pip install meltano), or set MELTANO_FORGE_MELTANO_BIN"
            ) from None
        if result.returncode != 0:
            last = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
            msg = f"`meltano init` failed: {last[0]}"
            raise InvalidRequest(msg, "Check that meltano is installed and on PATH")
        made = Workspace(folder, forge, Manifest(repo, info.default_branch, "", project_path))
        keep, _ = screen(folder, made.status().changes)
        files = made.change_set(keep)
        if before_push is not None:
            before_push([c.path for c in keep])
    first = forge.commit(
        info.default_branch,
        None,
        files,
        f"meltano init {project_name}\n\nMeltano-Forge-Run: init\n",
    )
    with contextlib.suppress(AlreadyExists):
        forge.create_branch(working_branch, first.sha)
    return Initialized(info.default_branch, first.sha, tuple(f.path for f in files), working_branch)
