"""The console script: the client's commands plus `serve`, which imports the service only
when it runs, so a runner starts fast and `client/` never imports `service/`."""

from __future__ import annotations

import sys

import click

from client.cli import add_command, main


@click.command()
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8080, type=int)
def serve(host: str, port: int) -> None:
    """Start the HTTP service (not part of this release yet)."""
    click.echo(
        "meltano-forge: the service is not available in this version. Use the client commands.",
        err=True,
    )
    sys.exit(2)


add_command(serve)

__all__ = ["main"]
