"""What every command shares: settings and forge (opened lazily), the output options that
may come before or after the subcommand, one renderer for text and JSON, and the one place
errors become a line of text and an exit code. Every line for people (results, notes,
errors, logs) has its control characters escaped here (`messages.printable`); the names in
it are quoted by the commands (`messages.shown`)."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from client import exits
from client.messages import printable
from providers.redaction import protect_logs, redact

if TYPE_CHECKING:  # loaded on first use: `check` and `--help` start without them
    from client.settings import Settings
    from providers.contract import Forge

log = logging.getLogger("meltano_forge")
F = TypeVar("F", bound=Callable[..., Any])
NOISY = ("httpx", "httpcore", "urllib3", "github", "gitlab")


@dataclasses.dataclass
class Context:
    """Settings are read on first use, inside `handled`, so a bad setting is reported in
    the output format the command asked for."""

    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    as_json: bool = False
    verbose: bool = False
    _settings: Settings | None = None
    _forge: Forge | None = None

    @property
    def settings(self) -> Settings:
        """The settings (environment plus command-line overrides)."""
        if self._settings is None:
            from client.settings import load_settings

            self._settings = load_settings(**self.overrides)
            protect_logs(self._settings.token.get_secret_value() if self._settings.token else None)
            for warning in self._settings.warnings:
                self.say(f"meltano-forge: warning: {warning}")
        return self._settings

    @property
    def forge(self) -> Forge:
        """The repository's adapter, opened on first use."""
        if self._forge is None:
            from providers.registry import open_forge

            self._forge = open_forge(self.settings.forge_config())
        return self._forge

    def emit(self, data: dict[str, Any], human: str) -> None:
        """Print one JSON document, or the human text."""
        if self.as_json:
            data = {**data, **self._warnings()}
            click.echo(redact(json.dumps(data, default=_default, sort_keys=True)))
        elif human:
            click.echo(redact(printable(human)))

    def _warnings(self) -> dict[str, list[str]]:
        """`{"warnings": [...]}` for JSON output when the settings had any, else nothing."""
        found = self._settings.warnings if self._settings is not None else ()
        return {"warnings": list(found)} if found else {}

    def say(self, text: str) -> None:
        """A progress note for people: stderr, so stdout stays the command's result."""
        click.echo(redact(printable(text)), err=True)

    def fail(self, error: BaseException, code: int) -> NoReturn:
        """Report an error in the requested format and exit with `code`: for people, one
        line whatever the names in it hold."""
        message = redact(str(error))
        if self.as_json:
            body = {"error": message, "kind": type(error).__name__, "exit_code": code}
            click.echo(redact(json.dumps({**body, **self._warnings()})))
        else:
            click.echo(f"meltano-forge: {printable(message, lines=False)}", err=True)
        sys.exit(code)


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


class _PrintableFormatter(logging.Formatter):
    """Log lines with their control characters escaped, like every other line."""

    def format(self, record: logging.LogRecord) -> str:
        """The message, printable."""
        return printable(super().format(record))


def configure_logging(verbose: bool) -> None:
    """INFO lines on stderr; DEBUG (and the SDKs' own logs) with `--verbose`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _set_json(click_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        click_ctx.ensure_object(Context).as_json = True


def _set_verbose(click_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        click_ctx.ensure_object(Context).verbose = True
        configure_logging(True)


def output_options(command: F) -> F:
    """`--json` and `--verbose`, accepted on the group and on every subcommand."""
    command = click.option(
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_set_verbose,
        help="Log details, including tracebacks.",
    )(command)
    return click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Print one machine-readable JSON document.",
    )(command)


@contextmanager
def handled(ctx: Context) -> Iterator[None]:
    """Turn every known error into one line and its exit code; anything else into one
    line asking for a report. Tracebacks (`--verbose`) are redacted like everything else."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - known errors in their words, the rest in one line
        if ctx.verbose:
            click.echo(redact(printable("".join(traceback.format_exception(exc)))), err=True)
        if exits.known(exc):
            ctx.fail(exc, exits.exit_code(exc))
        ctx.fail(
            RuntimeError(
                f"unexpected error ({type(exc).__name__}: {exc}). "
                "Run again with --verbose and report it."
            ),
            exits.FAILED,
        )
    finally:
        if ctx._forge is not None:
            ctx._forge.close()


pass_ctx = click.make_pass_decorator(Context, ensure=True)
