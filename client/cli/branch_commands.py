"""Commands on the repository's branches: branches, promote."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import click

from client import exits, messages, runner
from client.check_gate import CheckRefused, Verdict, judge
from client.cli.context import Context, handled, output_options, pass_ctx
from client.cli.workspace_commands import refuse_by_check
from client.manifest import Manifest
from client.messages import shown
from providers.contract import PromotionService
from providers.errors import NotFound, PermissionDenied, Refused
from providers.names import check_branch_name

if TYPE_CHECKING:
    from client.check import CheckResult


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
@click.option(
    "--override-check",
    is_flag=True,
    help="Promote although the source branch fails the check (admins only).",
)
@output_options
@pass_ctx
def promote(ctx: Context, source: str | None, target: str | None, override_check: bool) -> None:
    """Open (or reuse) a pull/merge request from the working branch to the default branch.
    A local repository has no pull requests: there the promotion is applied directly, as a
    fast-forward or a merge commit, and refused when both branches changed the same files.

    The source branch is checked first, as `meltano-forge check` would check it. When its
    errors would make the target fail (errors the target does not already have), the
    promotion is refused (exit 9, nothing opened) unless you administer the repository and
    pass --override-check: on a local repository you must own it, the service decides by
    your token's role, and a forge that reports whether the token administers the
    repository must say yes."""
    with handled(ctx):
        forge = ctx.forge
        src = check_branch_name(source or ctx.settings.working_branch)
        dst = check_branch_name(target or forge.repository().default_branch)
        verdict, source_sha = promotion_check(ctx, src, dst)
        summary = verdict.summary(f"'{shown(dst)}'")
        human = [f"check of {shown(src)} @ {source_sha[:12]}: {summary}"]
        if not verdict.allowed:
            if not override_check:
                refused = CheckRefused(
                    verdict,
                    f"The check of '{src}' fails: "
                    f"{messages.plural(len(verdict.new_errors), 'error')} that '{dst}' does not "
                    "have, so nothing was promoted",
                    "Fix them on the source branch, or, as an administrator, promote it "
                    "anyway with --override-check",
                )
                refuse_by_check(ctx, refused, f"{shown(src)} @ {source_sha[:12]}")
            human.append(_overridden(ctx))
        title, body = f"Promote {src} to {dst}", f"Opened by meltano-forge from `{src}`."
        if isinstance(forge, PromotionService):
            try:
                request = forge.open_promotion(  # an override only where the check asks one
                    src, dst, title, body, override_check=override_check and not verdict.allowed
                )
            except Refused as exc:
                if exc.kind != "check":
                    raise
                ctx.fail(exc, exits.CHECK_FAILED)  # the branch moved under us and now fails
        else:
            request = forge.open_change_request(src, dst, title, body)
        if request.merged:
            human.append(f"promoted {shown(src)} into {shown(dst)}: {request.detail}")
        elif request.created:
            human.append(f"opened {shown(request.url)}")
        else:
            human.append(f"already open: {shown(request.url)}")
        ctx.emit({**dataclasses.asdict(request), "check": verdict.as_dict()}, "\n".join(human))


def promotion_check(ctx: Context, source: str, target: str) -> tuple[Verdict, str]:
    """The gate's verdict on the source branch's head, judged against the target's (read
    only when the source fails), and the source's head."""
    from client.check import ForgeReader, check_project

    forge, project_path = ctx.forge, ctx.settings.project_path
    source_sha = forge.branch(source).head

    def target_check() -> CheckResult:
        try:
            target_sha = forge.branch(target).head
        except NotFound:  # a promotion into a branch that does not exist yet holds nothing
            return check_project({})
        return check_project(ForgeReader(forge, target_sha, project_path))

    verdict = judge(check_project(ForgeReader(forge, source_sha, project_path)), target_check)
    return verdict, source_sha


def _overridden(ctx: Context) -> str:
    """What overriding the check takes: the service decides by the token's role; a forge
    that says whether this token administers the repository must say yes."""
    if isinstance(ctx.forge, PromotionService):
        return "promoting although the check fails (the service allows it to admins only)"
    admin = ctx.forge.repository().can_admin
    if admin is False:
        msg = (
            "Only an administrator of the repository may promote a branch although its "
            "check fails, and this token does not administer it"
        )
        raise PermissionDenied(
            msg, "Fix what the check lists on the source branch, or ask an administrator"
        )
    if admin is None:
        return "promoting although the check fails (the forge does not say who administers it)"
    return "promoting although the check fails, as an administrator of the repository"


COMMANDS = (branches, promote)
