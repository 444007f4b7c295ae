"""`meltano-forge`: the thin client's command group. One module per command group holds
the parsing; the work is in the domain modules; `context` renders text or JSON and maps
errors to exit codes."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from client.cli.context import Context, configure_logging, output_options

COMMAND_MODULES = {
    "pull": "workspace_commands",
    "status": "workspace_commands",
    "diff": "workspace_commands",
    "commit": "workspace_commands",
    "checkout": "workspace_commands",
    "branches": "branch_commands",
    "promote": "branch_commands",
    "run": "run_commands",
    "init": "run_commands",
    "check": "check_commands",
}
"""Each command and the module of its group (`client.cli.<module>.<command>`): a command's
module is imported when it runs, so `check` starts without the workspace, the runner or
the settings model (the figure of merit of `make bench`'s check row)."""


class _Commands(click.Group):
    """A group whose commands load on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, loaded or not."""
        return sorted({*super().list_commands(ctx), *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing its module the first time."""
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f"client.cli.{COMMAND_MODULES[cmd_name]}")
            found = getattr(module, cmd_name)
            assert isinstance(found, click.Command)  # noqa: S101
            self.add_command(found)
        return found


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """`--version`: read from the installed package only when asked (a runner starts
    faster without importlib.metadata)."""
    if not value or ctx.resilient_parsing:
        return
    from importlib import metadata

    try:
        version = metadata.version("meltano-forge")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        version = "unknown"
    click.echo(f"meltano-forge, version {version}")
    ctx.exit()


@click.group(cls=_Commands)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
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


def add_command(command: click.Command | Callable[..., Any]) -> None:
    """Let the service package add `serve` without the client importing it."""
    assert isinstance(command, click.Command)  # noqa: S101
    main.add_command(command)


__all__ = ["add_command", "main"]
