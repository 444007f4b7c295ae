"""The console script: the client's commands plus `serve`, which imports the service only
when it runs, so a runner starts fast and `client/` never imports `service/`."""

from __future__ import annotations

import sys

import click

from client.cli import add_command, main


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104 - a container's service listens on all interfaces
@click.option("--port", default=8080, type=int, show_default=True)
@click.option(
    "--no-deliver", is_flag=True, help="Do not run the redeploy outbox worker in this process."
)
def serve(host: str, port: int, no_deliver: bool) -> None:
    """Start the HTTP service (projects from MELTANO_FORGE_PROJECTS_FILE)."""
    import uvicorn

    from client.settings import SettingsError
    from service.app import create_app, startup_lines
    from service.settings import ServiceSettings

    try:
        app = create_app(ServiceSettings(), deliver=not no_deliver)
    except SettingsError as exc:
        click.echo(f"meltano-forge: {exc}", err=True)
        sys.exit(2)
    for line in startup_lines(app.state.service):
        click.echo(line, err=True)
    uvicorn.run(app, host=host, port=port, log_level="info")


add_command(serve)

__all__ = ["main"]
