"""The console script: the client's commands plus `serve`, which imports the service only
when it runs, so a runner starts fast and `client/` never imports `service/`; and
`meltano`, so that a container's arguments can be a Meltano command."""

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


@click.command(
    context_settings={
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": [],
    }
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def meltano(click_ctx: click.Context, args: tuple[str, ...]) -> None:
    """`run -- meltano ARGS`: the image's entry point is `meltano-forge`, so `docker run
    IMAGE meltano run tap target` is a runner's whole command line, as the original
    request asks. Every argument, `--help` included, is Meltano's."""
    from client.cli.run_commands import run

    click_ctx.invoke(run, cmd=("meltano", *args))


add_command(serve)
add_command(meltano)

__all__ = ["main"]
