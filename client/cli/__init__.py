"""`meltano-forge`: the thin client's command group. One module per command group holds
the parsing; the work is in the domain modules; `context` renders text or JSON and maps
errors to exit codes."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from client.cli import branch_commands, run_commands, workspace_commands
from client.cli.context import Context, configure_logging, output_options


def _version() -> str:
    try:
        return metadata.version("meltano-forge")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


@click.group()
@click.version_option(_version(), "--version", prog_name="meltano-forge")
@output_options
@click.option("--repo", help="Repository URL (MELTANO_FORGE_REPO).")
@click.option("--branch", help="Branch (MELTANO_FORGE_BRANCH).")
@click.option(
    "--project-dir",
    type=click.Path(path_type=Path),
    help="Workspace folder (MELTANO_FORGE_PROJECT_DIR).",
)
@click.pass_context
def main(
    click_ctx: click.Context, repo: str | None, branch: str | None, project_dir: Path | None
) -> None:
    """Git-aware Meltano projects without git: GitHub, GitLab or a local bare repository."""
    ctx = click_ctx.ensure_object(Context)
    configure_logging(ctx.verbose)
    ctx.overrides = {"repo": repo, "branch": branch, "project_dir": project_dir}


for _module in (workspace_commands, branch_commands, run_commands):
    for _command in _module.COMMANDS:
        main.add_command(_command)


def add_command(command: click.Command | Callable[..., Any]) -> None:
    """Let the service package add `serve` without the client importing it."""
    assert isinstance(command, click.Command)  # noqa: S101
    main.add_command(command)


__all__ = ["add_command", "main"]
