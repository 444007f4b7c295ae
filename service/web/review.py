"""Compare and promote, runners' workspaces, redeploy deliveries."""

from __future__ import annotations

import difflib
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from pydantic import BaseModel

from client import patch
from providers.errors import InvalidRequest
from service import operations, promotions
from service.deps import WebAdmin, WebReader, WebWriter
from service.problems import Problem, shown
from service.web.common import page_about

router = APIRouter(include_in_schema=False)


def _split(diff: patch.FileDiff) -> Markup:
    before = (diff.old.data if diff.old and diff.old.data else b"").decode("utf-8", "replace")
    after = (diff.new.data if diff.new and diff.new.data else b"").decode("utf-8", "replace")
    table = difflib.HtmlDiff(wrapcolumn=80).make_table(
        before.splitlines(), after.splitlines(), "before", "after", context=True, numlines=3
    )
    return Markup(table)  # noqa: S704 - difflib escapes every line it puts in the table


class PromoteForm(BaseModel):
    """The compare page's Promote button: which branch into which, and (admins, for a branch
    whose check fails) the box "promote although the check fails"."""

    source: str
    target: str
    override_check: bool = False


@router.get("/projects/{project}/compare", response_class=HTMLResponse)
def compare(
    request: Request, ctx: WebReader, head: str | None = None, view: str = "unified"
) -> Response:
    """The working branch against the default branch, file by file."""
    target = operations.default_branch(ctx)
    source = head or ctx.policy.working
    base_sha, head_sha = operations.resolve(ctx, target), operations.resolve(ctx, source)
    files = [
        {
            "path": diff.path,
            "status": diff.status,
            "unified": patch.render([diff]).decode("utf-8", "replace"),
            "split": _split(diff) if view == "split" else "",
        }
        for diff in operations.file_diffs(ctx, base_sha, head_sha)
    ]
    ahead, behind = operations.ahead_behind(ctx, base_sha, head_sha)
    check = promotions.check_source(ctx, source, target, source_sha=head_sha, target_sha=base_sha)
    return page_about(
        request,
        ctx,
        "compare.html",
        source=source,
        target=target,
        files=files,
        view=view,
        ahead=ahead,
        behind=behind,
        check=check,
        refusal=operations.promotion_refusal(ctx, source, target, check),
    )


@router.post("/projects/{project}/promote", response_class=HTMLResponse)
def promote(request: Request, ctx: WebWriter, form: Annotated[PromoteForm, Form()]) -> Response:
    """Open or reuse the pull/merge request (a local repository merges at once)."""
    error, status, made = "", 200, None
    try:
        done = operations.promote(
            ctx,
            form.source,
            form.target,
            None,
            "Opened from the meltano-forge web UI.",
            override_check=form.override_check,
        )
        made = done.request
    except Problem as exc:  # refused by the service itself (a direct promotion to main, the check)
        error, status = exc.detail, exc.status
    except InvalidRequest as exc:
        error = shown(exc, ctx.state.hidden_paths())
    answer = page_about(request, ctx, "promoted.html", error=error, result=made)
    answer.status_code = status
    return answer


@router.get("/projects/{project}/workspaces", response_class=HTMLResponse)
def workspaces(request: Request, ctx: WebReader) -> Response:
    """Runners that report to the service; the dirty ones first, with their patches."""
    views = operations.list_workspaces(ctx.state, ctx.config.name)
    return page_about(request, ctx, "workspaces.html", workspaces=views)


def _deliveries(request: Request, ctx: WebReader, template: str) -> Response:
    rows = operations.list_deliveries(ctx.state, ctx.config.name, limit=200)
    return page_about(request, ctx, template, deliveries=rows)


@router.get("/projects/{project}/deliveries", response_class=HTMLResponse)
def deliveries(request: Request, ctx: WebReader) -> Response:
    """Redeploys: state, attempts, last error; dead letters can be retried by admins."""
    return _deliveries(request, ctx, "deliveries.html")


@router.get("/projects/{project}/fragments/deliveries", response_class=HTMLResponse)
def deliveries_fragment(request: Request, ctx: WebReader) -> Response:
    """The deliveries table alone, for live updates."""
    return _deliveries(request, ctx, "_deliveries.html")


@router.post("/projects/{project}/deliveries/{delivery_id}/retry")
def retry(ctx: WebAdmin, delivery_id: operations.DeliveryId) -> Response:
    """Another round of attempts for a dead letter (admins only)."""
    if not operations.retry_delivery(ctx.state, ctx.config.name, delivery_id):
        raise Problem(404, "Not found", f"No dead delivery {delivery_id}")
    return RedirectResponse(f"/projects/{ctx.config.name}/deliveries", status_code=303)
