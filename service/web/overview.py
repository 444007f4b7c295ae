"""Signing in and out, every project at a glance, one project's page, and the checks the
service ran on its pull/merge requests and pushes."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from client.check.changes import ProjectChanges
from providers.errors import NotFound, ProviderError
from service import check_jobs, operations, sessions
from service.deps import (
    ProjectContext,
    ReadableProjects,
    Redirect,
    Signed,
    StateDep,
    WebAdmin,
    WebReader,
    current_session,
)
from service.problems import Problem
from service.sessions import Session
from service.web.common import (
    page,
    page_about,
    set_private_cookie,
    signin_from_this_site,
    signin_page,
)
from service.web.setup_store import setup_token

router = APIRouter(include_in_schema=False)
PER_PAGE = 20


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, state: StateDep, next: str = "/") -> Response:
    """Paste an API token once."""
    if not state.projects.projects and setup_token(state.settings, create=False):
        raise Redirect("/setup")
    return signin_page(request, state, _local(next))


class SignInForm(BaseModel):
    """The sign-in form: an API token, where to go next, and the form's login-CSRF token."""

    token: str
    next: str = "/"
    csrf: str = ""


@router.post("/signin", response_class=HTMLResponse)
def signin(request: Request, state: StateDep, form: Annotated[SignInForm, Form()]) -> Response:
    """Trade the token for a session cookie (HttpOnly, SameSite=Strict, expiring); only
    from this site's sign-in form (login CSRF)."""
    token, next = form.token, form.next
    if not signin_from_this_site(request, form.csrf):
        return signin_page(
            request,
            state,
            _local(next),
            "This sign-in form expired or came from another site. Sign in again here.",
            status=403,
        )
    try:
        cookie, session = sessions.sign_in(state, token.strip())
    except Problem:
        return signin_page(
            request,
            state,
            _local(next),
            "That token is not known to this service. Paste an API token from the "
            "projects file (or the one the setup screen gave you).",
        )
    response = RedirectResponse(_local(next), status_code=303)
    set_cookie(response, cookie, session.expires_at, request)
    return response


def set_cookie(response: Response, cookie: str, expires_at: float, request: Request) -> None:
    """The session cookie: never readable by scripts, never sent cross-site."""
    settings = request.app.state.service.settings
    max_age = max(0, int(expires_at - time.time()))
    set_private_cookie(response, request, settings, sessions.COOKIE, cookie, max_age=max_age)


def _local(target: str) -> str:
    """Only paths on this site (no open redirect)."""
    local = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if local else "/"


@router.post("/signout")
def signout(request: Request, state: StateDep, session: Signed) -> Response:
    """End the session (the form carries the CSRF token like every other)."""
    sessions.sign_out(state, request.cookies.get(sessions.COOKIE))
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse)
def projects(
    request: Request,
    state: StateDep,
    session: Annotated[Session | None, Depends(current_session)],
    readable: ReadableProjects,
) -> Response:
    """Every project the token may see, in one view; the setup screen when there is none."""
    if not state.projects.projects:
        raise Redirect("/setup")
    if session is None:
        raise Redirect("/signin")
    rows = [operations.glance(ctx) for ctx in readable]
    return page(request, "projects.html", session, projects=rows)


@router.get("/projects/{project}", response_class=HTMLResponse)
def project_page(request: Request, ctx: WebReader, page_number: int = 1) -> Response:
    """Branches with badges and ahead/behind, the Meltano summary, the recent history."""
    views = operations.branches(ctx, counts=False)
    start = (max(page_number, 1) - 1) * PER_PAGE
    shown = views[start : start + PER_PAGE]
    default = operations.default_branch(ctx)
    default_head = next((v.head for v in views if v.name == default), None)
    counted = [
        (v, operations.ahead_behind(ctx, default_head, v.head) if default_head else None)
        for v in shown
    ]
    summary: dict[str, Any] | None
    try:
        summary = operations.meltano(ctx, None, None)
    except (NotFound, ProviderError):
        summary = None
    return page_about(
        request,
        ctx,
        "project.html",
        default=default,
        branches=counted,
        checks=check_jobs.latest_by_branch(
            ctx.state.engine, ctx.config.name, {v.name: v.head for v in shown}
        ),
        page_number=max(page_number, 1),
        more=start + PER_PAGE < len(views),
        summary=summary,
        history=_history(ctx, None),
        dirty=sum(1 for w in operations.list_workspaces(ctx.state, ctx.config.name) if w.dirty),
        committed=request.query_params.get("committed", ""),
        draft=request.query_params.get("draft", ""),
        promoted=request.query_params.get("promoted", ""),
    )


def _history(ctx: ProjectContext, branch: str | None) -> list[Any]:
    try:
        return operations.history(ctx, branch, 15)
    except NotFound:
        return []


@router.get("/projects/{project}/fragments/history", response_class=HTMLResponse)
def history_fragment(request: Request, ctx: WebReader) -> Response:
    """The history list alone, for live updates."""
    history = _history(ctx, None)
    return page_about(request, ctx, "_history.html", history=history)


@router.get("/projects/{project}/checks/{sha}", response_class=HTMLResponse)
def check_page(
    request: Request, ctx: WebReader, sha: Annotated[str, Path(pattern=r"^[0-9a-f]{40}$")]
) -> Response:
    """A commit's findings and what its change does: where a commit status links."""
    row = check_jobs.result_at(ctx.state.engine, ctx.config.name, sha)
    check = changes = base_sha = None
    if row is not None:
        findings = json.loads(row.findings)
        summary = json.loads(row.summary)
        check = {
            "ok": row.ok,
            "branch": row.branch,
            "number": row.number,
            "target": row.target,
            "checked_at": row.checked_at,
            "errors": findings["errors"],
            "warnings": findings["warnings"],
        }
        changes, base_sha = ProjectChanges.from_dict(summary), summary.get("base_sha")
    answer = page_about(
        request, ctx, "check.html", sha=sha, check=check, changes=changes, base_sha=base_sha
    )
    if row is None:
        answer.status_code = 404
    return answer


@router.get("/projects/{project}/check-jobs", response_class=HTMLResponse)
def check_jobs_page(request: Request, ctx: WebReader) -> Response:
    """Every check job: what it reported, what superseded it, why a dead one failed."""
    jobs = check_jobs.list_jobs(ctx.state.engine, ctx.config.name, None, 200)
    return page_about(request, ctx, "check_jobs.html", jobs=jobs)


@router.post("/projects/{project}/check-jobs/{job_id}/retry")
def retry_check_job(ctx: WebAdmin, job_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:
    """Another round of attempts for a dead check job (admins only)."""
    if not check_jobs.retry(ctx.state.engine, ctx.config.name, job_id):
        raise Problem(404, "Not found", f"No dead check job {job_id}")
    return RedirectResponse(f"/projects/{ctx.config.name}/check-jobs", status_code=303)
