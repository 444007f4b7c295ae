"""Commands on the workspace: pull, status, diff, commit, checkout."""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import sys
from typing import NoReturn

import click

from client import exits, messages, patch, runner, sync
from client.check_gate import CheckRefused
from client.cli.context import Context, handled, output_options, pass_ctx
from client.guard import screen
from client.messages import shown
from client.workspace import Local, LocalChange, Workspace, uncommitted
from providers.contract import FileMode
from providers.errors import NotFound
from providers.names import branch_clash, branch_clash_error, check_branch_name


def open_workspace(ctx: Context) -> Workspace:
    """The materialized workspace (finishing any update a killed process left), or an
    error that says how to make one."""
    settings = ctx.settings
    ws = Workspace.open(
        settings.project_dir, lambda: ctx.forge, settings.limits, settings.git_remote
    )
    ws.manifest  # noqa: B018 - refuses a folder that was never materialized
    return ws


@click.command()
@output_options
@pass_ctx
def pull(ctx: Context) -> None:
    """Materialize the branch into the folder, or bring the workspace up to date."""
    with handled(ctx):
        report = runner.RunReport(
            "pull", runner.policy_for(ctx.settings).target(ctx.settings.branch)
        )
        ws = runner.prepare(ctx.forge, ctx.settings, report)
        manifest = ws.manifest
        if report.materialized:
            what = f"materialized {messages.plural(len(manifest.files), 'file')}"
        elif report.pulled:
            what = f"updated {messages.plural(len(report.pulled), 'file')}"
        else:
            what = "already up to date"
        ctx.emit(
            {
                "branch": manifest.branch,
                "sha": manifest.base_sha,
                "materialized": report.materialized,
                "updated": report.pulled,
                "created_branch": report.created_branch,
                "read_only": report.read_only,
            },
            f"{shown(manifest.branch)} @ {manifest.base_sha[:12]}: {what} in {shown(ws.root)}"
            + (" (read-only)" if report.read_only else ""),
        )


@click.command()
@output_options
@pass_ctx
def status(ctx: Context) -> None:
    """List uncommitted changes (and what the secret guard would hold back)."""
    with handled(ctx):
        ws = open_workspace(ctx)
        manifest = ws.manifest
        changes = ws.status().changes
        _, held = screen(
            ws.root, changes, ctx.settings.secret_glob_list, ctx.settings.allowed_secret_globs
        )
        lines = [f"{c.kind:9} {shown(c.path)}" for c in changes] or ["nothing to commit"]
        lines += [f"held back {shown(h.path)}: {h.reason}" for h in held]
        lines += [
            f"rescued to {shown(r.branch)} ({r.reason}): {', '.join(map(shown, r.paths))}"
            for r in manifest.rescues
        ]
        ctx.emit(
            {
                "branch": manifest.branch,
                "base_sha": manifest.base_sha,
                "changes": changes,
                "held_back": held,
                "rescues": manifest.rescues,
            },
            f"On {shown(manifest.branch)} @ {manifest.base_sha[:12]}\n" + "\n".join(lines),
        )


def _selected(changes: list[LocalChange], paths: tuple[str, ...]) -> list[LocalChange]:
    if not paths:
        return changes
    wanted = [p.strip("/") for p in paths]
    return [
        c
        for c in changes
        if any(
            c.path == w or c.path.startswith(w + "/") or fnmatch.fnmatchcase(c.path, w)
            for w in wanted
        )
    ]


@click.command()
@click.argument("paths", nargs=-1)
@click.option("--binary", is_flag=True, help="Binary files as git's binary patches.")
@click.option("--stat", "as_stat", is_flag=True, help="A summary line per file.")
@click.option("--name-only", is_flag=True, help="Only the changed paths.")
@click.option("--name-status", is_flag=True, help="The changed paths with A, M, D or T.")
@output_options
@pass_ctx
def diff(
    ctx: Context,
    paths: tuple[str, ...],
    binary: bool,
    as_stat: bool,
    name_only: bool,
    name_status: bool,
) -> None:
    """Uncommitted changes as a git patch (`git apply` takes it on the base commit)."""
    with handled(ctx):
        ws = open_workspace(ctx)
        changes = _selected(ws.status().changes, paths)
        if name_only or name_status:
            human = (
                "\n".join(shown(c.path) for c in changes)
                if name_only
                else "\n".join(
                    f"{_letter(c)}\t{shown(c.path)}" for c in sorted(changes, key=lambda c: c.path)
                )
            )
            ctx.emit({"paths": [c.path for c in changes]}, human)
            return
        diffs = ws.diffs(changes)
        if as_stat:
            named = [dataclasses.replace(d, path=shown(d.path)) for d in diffs]
            ctx.emit({"stat": patch.stat(diffs)}, patch.stat(named))
            return
        rendered = patch.render(diffs, binary=binary)
        if ctx.as_json:
            ctx.emit({"diff": rendered.decode("utf-8", "replace")}, "")
        else:
            sys.stdout.buffer.write(rendered)
            sys.stdout.flush()


def _letter(change: LocalChange) -> str:
    if change.kind == "added":
        return "A"
    if change.kind == "deleted":
        return "D"
    symlinks = (change.mode is FileMode.SYMLINK, change.base_mode is FileMode.SYMLINK)
    return "T" if symlinks[0] != symlinks[1] else "M"


@click.command()
@click.option("-m", "--message", default=None, help="Commit message (default: names the files).")
@click.option(
    "--no-verify",
    is_flag=True,
    help="Push without checking the project first (as `git commit --no-verify`).",
)
@output_options
@pass_ctx
def commit(ctx: Context, message: str | None, no_verify: bool) -> None:
    """Commit and push the workspace's changes (refused on read-only branches).

    The project is checked first, as `meltano-forge check` would check it once the commit
    lands, and the commit is refused (exit 9, nothing pushed) when that makes the project
    fail. A project that already fails on its base commit may still take a change that
    adds no error to those it has (the fix of some of them, or a change elsewhere); a
    change that adds any error is refused, even if it fixes another. `--no-verify` skips
    the check."""
    with handled(ctx):
        ws = open_workspace(ctx)
        runner.policy_for(ctx.settings).check_writable(ws.manifest.branch)
        changes = ws.status().changes
        author = ctx.settings.author
        text = message or messages.for_commit([c.path for c in changes], "manual", author)
        try:
            outcome = sync.commit(
                ws,
                text,
                author,
                secret_globs=ctx.settings.secret_glob_list,
                allowed=ctx.settings.allowed_secret_globs,
                local=changes,
                check=not no_verify,
            )
        except CheckRefused as refused:
            where = f"{shown(ws.manifest.branch)} with your changes"
            refuse_by_check(ctx, refused, where)
        report_commit(ctx, outcome)


def refuse_by_check(ctx: Context, refused: CheckRefused, where: str) -> NoReturn:
    """Show the findings as `meltano-forge check` does, say why nothing was pushed, and
    exit 9 (one JSON document with `--json`)."""
    from client.cli.check_commands import render

    verdict = refused.verdict
    if ctx.as_json:
        ctx.emit(
            {
                "check": verdict.as_dict(),
                "error": str(refused),
                "kind": type(refused).__name__,
                "exit_code": exits.CHECK_FAILED,
            },
            "",
        )
        sys.exit(exits.CHECK_FAILED)
    ctx.emit({}, render(verdict.result, where))
    ctx.fail(refused, exits.CHECK_FAILED)


def conflict_line(outcome: sync.CommitOutcome) -> str:
    """What to tell a person whose changes went to a conflict side branch."""
    side, branch = shown(outcome.side_branch), shown(outcome.branch)
    return (
        f"Conflict in {', '.join(map(shown, outcome.conflicts))}: your changes are saved on "
        f"branch '{side}' and the workspace is back at the head of '{branch}'. Review them "
        f"with `meltano-forge checkout {side}`, or open a change request with "
        f"`meltano-forge promote --source {side} --target {branch}`"
    )


def report_commit(ctx: Context, outcome: sync.CommitOutcome) -> None:
    """Print what a commit did; exit 3 when it went to a conflict side branch."""
    lines = [f"held back {shown(h.path)}: {h.reason}" for h in outcome.held]
    if outcome.side_branch and outcome.conflicts:
        lines.append(conflict_line(outcome))
    elif outcome.sha:
        where = shown(outcome.side_branch or outcome.branch)
        lines.append(
            f"committed {messages.plural(len(outcome.paths), 'file')} to {where} as "
            f"{outcome.sha[:12]}"
            + (" (rebased)" if outcome.rebased else "")
            + (f", merged {', '.join(map(shown, outcome.merged))}" if outcome.merged else "")
        )
    else:
        lines.append("nothing to commit")
    if outcome.check is not None and (outcome.check["errors"] or outcome.check["warnings"]):
        lines.append(
            f"{outcome.check['summary']}, with "
            + messages.plural(len(outcome.check["warnings"]), "warning")
            + " (`meltano-forge check` lists them)"
        )
    ctx.emit(dataclasses.asdict(outcome), "\n".join(lines))
    if outcome.side_branch and outcome.conflicts:
        sys.exit(exits.CONFLICT)


def missing_branch(ctx: Context, name: str) -> NotFound:
    """A branch that does not exist, with the closest existing names."""
    names = [b.name for b in ctx.forge.branches()]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"; the closest are {', '.join(repr(c) for c in close)}" if close else ""
    return NotFound(
        f"There is no branch '{name}'{hint}",
        "Check the name, or pass --create (-b) to create it from the current branch",
    )


@click.command()
@click.argument("branch")
@click.option(
    "-b", "--create", is_flag=True, help="Create the branch from the current one if missing."
)
@click.option("--discard", is_flag=True, help="Throw away uncommitted changes.")
@click.option("--carry", is_flag=True, help="Reapply uncommitted changes on the new branch.")
@output_options
@pass_ctx
def checkout(ctx: Context, branch: str, create: bool, discard: bool, carry: bool) -> None:
    """Switch the workspace to another branch."""
    with handled(ctx):
        ws = open_workspace(ctx)
        manifest = ws.manifest
        check_branch_name(branch)
        local = Local.DISCARD if discard else Local.KEEP if carry else Local.REFUSE
        if local is Local.REFUSE:
            dirty = [c.path for c in ws.status().changes]
            if dirty:
                raise uncommitted(dirty)
        try:
            target = ctx.forge.branch(branch)
            created = False
        except NotFound:
            if not create:
                raise missing_branch(ctx, branch) from None
            clash = branch_clash(branch, [b.name for b in ctx.forge.branches()])
            if clash:
                raise branch_clash_error(branch, clash) from None
            target, created = ctx.forge.create_branch(branch, manifest.base_sha), True
        was = manifest.branch
        update = ws.update(target.name, target.head, local=local)
        ctx.emit(
            {
                "branch": target.name,
                "sha": target.head,
                "created": created,
                "updated": update.written + update.deleted,
                "merged": update.merged,
            },
            f"switched to {shown(target.name)} @ {target.head[:12]}"
            + (f" (created from {shown(was)})" if created else ""),
        )


COMMANDS = (pull, status, diff, commit, checkout)
