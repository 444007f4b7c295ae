"""What every page shares: templates, the signed-in session, the project a page is about
(checked with the same `authorize` as the API), CSRF checks and redirects."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from client.policy import BranchPolicy
from service.auth import authorize
from service.deps import ProjectContext, ServiceState, StateDep
from service.problems import Problem
from service.settings import Role
from service.web import sessions
from service.web.sessions import Session

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def age(epoch: float | int | None) -> str:
    """`3 minutes ago`, for people."""
    if not epoch:
        return "never"
    seconds = max(0, int(time.time() - float(epoch)))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def when(epoch: float | int | None) -> str:
    """An ISO time, for `<time datetime=...>`."""
    return dt.datetime.fromtimestamp(float(epoch or 0), tz=dt.UTC).isoformat()


def colored(diff: str) -> Markup:
    """A unified diff with its added, removed and hunk-header lines marked for the CSS."""
    kinds = {"+": "add", "-": "del", "@": "hunk"}
    lines = []
    for line in diff.splitlines():
        kind = "" if line.startswith(("+++", "---")) else kinds.get(line[:1], "")
        text = escape(line)
        lines.append(Markup('<span class="{}">{}</span>').format(kind, text) if kind else text)
    return Markup("\n").join(lines)


templates.env.filters["age"] = age
templates.env.filters["colored"] = colored
templates.env.filters["when"] = when
templates.env.filters["short"] = lambda sha: (sha or "")[:12]
templates.env.filters["headline"] = lambda message: (message or "").split("\n", 1)[0]


class Redirect(Exception):
    """Answer with a redirect (see other)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


async def handle_redirect(request: Request, exc: Exception) -> RedirectResponse:
    """The exception handler for `Redirect`."""
    assert isinstance(exc, Redirect)  # noqa: S101
    return RedirectResponse(exc.location, status_code=303)


def current_session(request: Request, state: StateDep) -> Session | None:
    """The signed-in session, if any."""
    return sessions.lookup(state, request.cookies.get(sessions.COOKIE))


def signed_in(
    request: Request, session: Annotated[Session | None, Depends(current_session)]
) -> Session:
    """The session; a person who is not signed in goes to the sign-in page first."""
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise Redirect("/signin?" + urlencode({"next": target}, safe="/"))
    return session


Signed = Annotated[Session, Depends(signed_in)]


def project_for(state: ServiceState, session: Session, project: str, role: Role) -> ProjectContext:
    """The page's project, for this session's token (403/404 problems as the API's)."""
    assert session.token.token is not None  # noqa: S101 - sessions need a token's secret
    token = authorize(
        state.projects, f"Bearer {session.token.token.get_secret_value()}", project, role
    )
    config = state.projects.project(project)
    if config is None:
        raise Problem(404, "Not found", f"No project named '{project}'")
    policy = BranchPolicy(config.working_branch, config.protected_branches)
    return ProjectContext(config, state.forge(config), policy, token, state)


def check_csrf(session: Session, offered: str | None) -> None:
    """Refuse a state change whose form does not carry the session's CSRF token."""
    if not sessions.csrf_ok(session, offered):
        raise Problem(403, "Forbidden", "The form's CSRF token is missing or wrong; reload it")


def page(request: Request, template: str, session: Session | None, **data: Any) -> HTMLResponse:
    """Render a page with what every page needs; never cached (pages show a session's
    data, and the setup screen shows a new token once)."""
    response = templates.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "csrf": session.csrf if session else "",
            "can_write": session is not None and session.may(Role.WRITE),
            "can_admin": session is not None and session.may(Role.ADMIN),
            **data,
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response
