"""The runner and the first commit: run, init."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click

from client import exits, messages, runner
from client.cli.context import Context, handled, output_options, pass_ctx
from client.cli.workspace_commands import conflict_line
from client.messages import shown
from client.project_init import init_repository
from client.sync import CommitOutcome
from client.workspace import PullConflict
from providers.config import ProviderKind
from providers.local import LocalForge


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@output_options
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
def run(ctx: Context, cmd: tuple[str, ...]) -> None:
    """Materialize or pull, run CMD (e.g. `meltano run tap target`), auto-commit changes."""
    with handled(ctx):
        report = runner.run(ctx.forge, ctx.settings, cmd, json_output=ctx.as_json)
        lines = [
            f"run {report.run_id} on {shown(report.branch)} @ {report.base_sha[:12]}"
            + (" (read-only)" if report.read_only else "")
        ]
        code = report.exit_code
        if report.commit is not None:
            outcome = report.commit
            lines += [f"held back {shown(h.path)}: {h.reason}" for h in outcome.held]
            if outcome.side_branch and outcome.conflicts:
                lines.append(conflict_line(outcome))
                code = code or exits.CONFLICT
            elif outcome.check_failed and report.verdict is not None:
                lines += check_failed_lines(report, outcome)
            elif outcome.side_branch and outcome.sha:
                side, branch = shown(outcome.side_branch), shown(outcome.branch)
                lines.append(
                    f"the command failed; its changes are saved on '{side}' and the workspace "
                    f"is back at the head of '{branch}'. Bring them back with "
                    f"`meltano-forge checkout {side}`, or open a change request with "
                    f"`meltano-forge promote --source {side} --target {branch}`"
                )
            elif outcome.sha:
                lines.append(
                    f"auto-committed {', '.join(map(shown, outcome.paths))} as {outcome.sha[:12]}"
                    + (" (rebased)" if outcome.rebased else "")
                )
                if outcome.check is not None and not outcome.check["ok"]:
                    lines.append(f"note: {outcome.check['summary']}")
        if report.bundle:
            lines.append(
                f"the changes could not be pushed; they are saved in {shown(report.bundle)} "
                "(its README.txt says how to bring them back)"
            )
        data = dataclasses.asdict(report)
        data.pop("verdict")  # `commit.check` holds it as data
        ctx.emit(data, "\n".join(lines))
        sys.exit(code)


def check_failed_lines(report: runner.RunReport, outcome: CommitOutcome) -> list[str]:
    """The findings, as `meltano-forge check` shows them, and where the changes went."""
    from client.cli.check_commands import render

    assert report.verdict is not None  # noqa: S101 - only for a refused change
    side, branch = shown(outcome.side_branch), shown(outcome.branch)
    summary = report.verdict.summary(f"'{branch}'")
    return [
        render(report.verdict.result, f"what the command left on {branch}"),
        f"{summary[:1].upper()}{summary[1:]}: the changes are saved on '{side}', "
        f"not on '{branch}', and the workspace is back at the head of '{branch}'. Fix them "
        f"with `meltano-forge checkout {side}`, then commit",
    ]


@click.command()
@click.option("--project-name", default="meltano-project", help="Name given to `meltano init`.")
@output_options
@pass_ctx
def init(ctx: Context, project_name: str) -> None:
    """`meltano init` pushed as the first commit of an empty repository, plus the working
    branch, which is then materialized into the project folder."""
    with handled(ctx):
        settings = ctx.settings
        config = settings.forge_config()
        if config.location.kind is ProviderKind.LOCAL:
            LocalForge.create(config)
        done = init_repository(
            ctx.forge,
            meltano_bin=settings.meltano_bin,
            project_name=project_name,
            working_branch=settings.working_branch,
            project_path=settings.project_path,
            repo=settings.repo,
            before_push=lambda paths: _room_for(settings.project_dir, paths),
        )
        report = runner.RunReport("init", runner.policy_for(settings).target(settings.branch))
        ws = runner.prepare(ctx.forge, settings, report)
        data = {
            "default_branch": done.default_branch,
            "sha": done.sha,
            "files": list(done.files),
            "working_branch": done.working_branch,
            "workspace": str(ws.root),
        }
        human = (
            f"initialised {done.default_branch} with {messages.plural(len(done.files), 'file')} "
            f"({done.sha[:12]}), created {shown(done.working_branch)}, and materialized "
            f"{shown(ws.manifest.branch)} in {shown(ws.root)}"
        )
        ctx.emit(data, human)


def _room_for(folder: Path, paths: list[str]) -> None:
    """Refuse before pushing when the folder holds other files where the project's go."""
    in_the_way = [p for p in paths if os.path.lexists(folder / p)]
    if in_the_way:
        raise PullConflict([], in_the_way)


COMMANDS = (run, init)
