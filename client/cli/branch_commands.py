"""Commands on the repository's branches: branches, promote."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from client import runner
from client.cli.context import Context, handled, output_options, pass_ctx
from client.manifest import Manifest
from client.messages import shown


@click.command()
@output_options
@pass_ctx
def branches(ctx: Context) -> None:
    """List branches with head, protection and whether the workspace is behind."""
    with handled(ctx):
        policy = runner.policy_for(ctx.settings)
        manifest = Manifest.load(ctx.settings.project_dir.resolve())
        rows: list[dict[str, Any]] = []
        for b in ctx.forge.branches():
            behind = (
                manifest is not None and manifest.branch == b.name and manifest.base_sha != b.head
            )
            rows.append(
                {
                    "name": b.name,
                    "head": b.head,
                    "protected": b.protected or policy.is_read_only(b.name),
                    "behind": behind,
                    "current": manifest is not None and manifest.branch == b.name,
                }
            )
        width = max((len(shown(r["name"])) for r in rows), default=0) + 2
        human = "\n".join(
            " ".join(
                (
                    ("* " if r["current"] else "  ") + f"{shown(r['name']):{width}}",
                    r["head"][:12],
                    "read-only" if r["protected"] else "",
                    "behind" if r["behind"] else "",
                )
            ).rstrip()
            for r in rows
        )
        ctx.emit({"branches": rows}, human)


@click.command()
@click.option(
    "--source", default=None, help="Branch with the changes (default: the working branch)."
)
@click.option("--target", default=None, help="Branch to merge into (default: the default branch).")
@output_options
@pass_ctx
def promote(ctx: Context, source: str | None, target: str | None) -> None:
    """Open (or reuse) a pull/merge request from the working branch to the default branch.
    A local repository has no pull requests: there the promotion is applied directly, as a
    fast-forward or a merge commit, and refused when both branches changed the same files."""
    with handled(ctx):
        src = source or ctx.settings.working_branch
        dst = target or ctx.forge.repository().default_branch
        request = ctx.forge.open_change_request(
            src, dst, f"Promote {src} to {dst}", f"Opened by meltano-forge from `{src}`."
        )
        if request.merged:
            human = f"promoted {shown(src)} into {shown(dst)}: {request.detail}"
        elif request.created:
            human = f"opened {shown(request.url)}"
        else:
            human = f"already open: {shown(request.url)}"
        ctx.emit(dataclasses.asdict(request), human)


COMMANDS = (branches, promote)
