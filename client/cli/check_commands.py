"""`meltano-forge check [REF]`: the project checked as Meltano would load it. The check
itself is imported when the command runs, so every other command starts as fast as before."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from client import exits, messages
from client.cli.context import Context, handled, output_options, pass_ctx
from client.environment import ENV_PREFIX
from providers.errors import NotFound

if TYPE_CHECKING:
    from client.check import CheckResult, ProjectReader

_SHA = re.compile(r"[0-9a-f]{40}")


def _workspace_dir(ctx: Context) -> Path:
    """The folder to check: `--project-dir`, MELTANO_FORGE_PROJECT_DIR, or the current
    folder. Read without the forge settings, so any Meltano project can be checked."""
    given = ctx.overrides.get("project_dir") or os.environ.get(f"{ENV_PREFIX}PROJECT_DIR")
    return Path(given) if given else Path.cwd()


def _forge_reader(ctx: Context, ref: str) -> tuple[ProjectReader, str]:
    """A branch's head or a full commit SHA on the forge."""
    from client.check import ForgeReader

    try:
        sha = ctx.forge.branch(ref).head
    except NotFound:
        if not _SHA.fullmatch(ref):
            raise
        sha = ref
    return ForgeReader(ctx.forge, sha, ctx.settings.project_path), sha


def render(result: CheckResult, where: str) -> str:
    """Findings one a line, `file:line: severity [rule] reason. instruction.`, then a total."""
    lines = [f"{f.location()}: {f.severity.value} [{f.rule}] {f.message}" for f in result.findings]
    counts = f"{messages.plural(len(result.errors), 'error')}, " + messages.plural(
        len(result.warnings), "warning"
    )
    verdict = "ok" if result.ok else "the check failed"
    lines.append(f"{where}: {verdict} ({counts})")
    return "\n".join(lines)


@click.command()
@click.argument("ref", required=False)
@click.option(
    "--environment",
    "-e",
    default=None,
    help="Also require this Meltano environment to exist (as `meltano --environment`).",
)
@output_options
@pass_ctx
def check(ctx: Context, ref: str | None, environment: str | None) -> None:
    """Check the project as Meltano would load it, without running a plugin: YAML,
    Meltano's schema, references (jobs, schedules, environments, inherit_from,
    include_paths), what a cold runner needs, and literal secrets. Without REF, the
    workspace folder; with REF, that branch or commit on the forge. Exit code 9 when
    there are errors; warnings never fail."""
    with handled(ctx):
        from client.check import FolderReader, check_project

        files: ProjectReader
        sha: str | None = None
        if ref is None:
            folder = _workspace_dir(ctx)
            files, where = FolderReader(folder), messages.shown(folder)
        else:
            files, sha = _forge_reader(ctx, ref)
            where = f"{ref} @ {sha[:12]}"
        result = check_project(files, environment=environment)
        ctx.emit({**result.as_dict(), "ref": ref, "sha": sha}, render(result, where))
        if not result.ok:
            sys.exit(exits.CHECK_FAILED)


COMMANDS = (check,)
