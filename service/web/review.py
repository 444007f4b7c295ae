"""Compare and promote, runners' workspaces, redeploy deliveries."""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from client import patch
from providers.contract import FileMode
from providers.errors import InvalidRequest, NotFound
from service import operations
from service.deps import ProjectContext, StateDep
from service.problems import Problem, shown
from service.settings import Role
from service.web.common import Signed, check_csrf, page, project_for

router = APIRouter(include_in_schema=False)


def _side(ctx: ProjectContext, sha: str, path: str) -> patch.Side | None:
    try:
        return patch.Side.of(ctx.forge.read_file(sha, path), FileMode.REGULAR)
    except NotFound:
        return None


def _split(diff: patch.FileDiff) -> Markup:
    before = (diff.old.data if diff.old and diff.old.data else b"").decode("utf-8", "replace")
    after = (diff.new.data if diff.new and diff.new.data else b"").decode("utf-8", "replace")
    table = difflib.HtmlDiff(wrapcolumn=80).make_table(
        before.splitlines(), after.splitlines(), "before", "after", context=True, numlines=3
    )
    return Markup(table)  # noqa: S704 - difflib escapes every line it puts in the table


@router.get("/projects/{project}/compare", response_class=HTMLResponse)
def compare(
    request: Request,
    state: StateDep,
    session: Signed,
    project: str,
    head: str | None = None,
    view: str = "unified",
) -> Response:
    """The working branch against the default branch, file by file."""
    ctx = project_for(state, session, project, Role.READ)
    target = operations.default_branch(ctx)
    source = head or ctx.policy.working
    base_sha, head_sha = operations.resolve(ctx, target), operations.resolve(ctx, source)
    files: list[dict[str, Any]] = []
    for path in sorted(ctx.forge.changed_paths(base_sha, head_sha)):
        diff = patch.FileDiff(path, _side(ctx, base_sha, path), _side(ctx, head_sha, path))
        files.append(
            {
                "path": path,
                "status": diff.status,
                "unified": patch.render([diff]).decode("utf-8", "replace"),
                "split": _split(diff) if view == "split" else "",
            }
        )
    ahead, behind = operations.ahead_behind(ctx, base_sha, head_sha)
    return page(
        request,
        "compare.html",
        session,
        project=ctx.config,
        source=source,
        target=target,
        files=files,
        view=view,
        ahead=ahead,
        behind=behind,
        refusal=operations.promotion_refusal(ctx, source, target),
    )


@router.post("/projects/{project}/promote", response_class=HTMLResponse)
def promote(
    request: Request,
    state: StateDep,
    session: Signed,
    project: str,
    csrf: Annotated[str, Form()],
    source: Annotated[str, Form()],
    target: Annotated[str, Form()],
) -> Response:
    """Open or reuse the pull/merge request (a local repository merges at once)."""
    check_csrf(session, csrf)
    ctx = project_for(state, session, project, Role.WRITE)
    try:
        request_made = operations.promote(
            ctx, source, target, None, "Opened from the meltano-forge web UI."
        )
    except Problem as exc:  # refused by the service itself (a direct promotion to main)
        refused = page(
            request, "promoted.html", session, project=ctx.config, error=exc.detail, result=None
        )
        refused.status_code = exc.status
        return refused
    except InvalidRequest as exc:
        error = shown(exc, state.hidden_paths())
        return page(request, "promoted.html", session, project=ctx.config, error=error, result=None)
    return page(
        request, "promoted.html", session, project=ctx.config, error="", result=request_made
    )


@router.get("/projects/{project}/workspaces", response_class=HTMLResponse)
def workspaces(request: Request, state: StateDep, session: Signed, project: str) -> Response:
    """Runners that report to the service; the dirty ones first, with their patches."""
    ctx = project_for(state, session, project, Role.READ)
    views = operations.list_workspaces(state, project)
    return page(request, "workspaces.html", session, project=ctx.config, workspaces=views)


@router.get("/projects/{project}/deliveries", response_class=HTMLResponse)
def deliveries(request: Request, state: StateDep, session: Signed, project: str) -> Response:
    """Redeploys: state, attempts, last error; dead letters can be retried by admins."""
    ctx = project_for(state, session, project, Role.READ)
    rows = operations.list_deliveries(state, project, limit=200)
    return page(request, "deliveries.html", session, project=ctx.config, deliveries=rows)


@router.get("/projects/{project}/fragments/deliveries", response_class=HTMLResponse)
def deliveries_fragment(
    request: Request, state: StateDep, session: Signed, project: str
) -> Response:
    """The deliveries table alone, for live updates."""
    ctx = project_for(state, session, project, Role.READ)
    rows = operations.list_deliveries(state, project, limit=200)
    return page(request, "_deliveries.html", session, project=ctx.config, deliveries=rows)


@router.post("/projects/{project}/deliveries/{delivery_id}/retry")
def retry(
    state: StateDep,
    session: Signed,
    project: str,
    delivery_id: operations.DeliveryId,
    csrf: Annotated[str, Form()],
) -> Response:
    """Another round of attempts for a dead letter (admins only)."""
    check_csrf(session, csrf)
    ctx = project_for(state, session, project, Role.ADMIN)
    if not operations.retry_delivery(state, ctx.config.name, delivery_id):
        raise Problem(404, "Not found", f"No dead delivery {delivery_id}")
    return RedirectResponse(f"/projects/{project}/deliveries", status_code=303)
