"""What every page shares: templates and their filters, rendering, cookies and redirects.
Who may see a page (the session, its role, its CSRF token) is decided by the dependencies
in `service.deps`, as for the API's routes."""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from service import sessions
from service.deps import PageContext, Redirect, ServiceState
from service.sessions import Session
from service.settings import Role, SecureCookies, ServiceSettings

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


async def handle_redirect(request: Request, exc: Exception) -> RedirectResponse:
    """The exception handler for `Redirect`."""
    assert isinstance(exc, Redirect)  # noqa: S101
    return RedirectResponse(exc.location, status_code=303)


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
    response.headers.update(PAGE_HEADERS)
    return response


PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""Every page: never cached (pages show a session's data, the setup screen a new token
once), and no script but our own file, whatever a forge or a repository put in the HTML
(a `javascript:` link, an inline handler), and never inside another site's frame."""


def web_link(url: object) -> str:
    """`url` when it is an http(s) address, else "": a forge's answer (a pull request's
    `html_url`, a repository's `web_url`) is untrusted, and `javascript:` in an `href`
    runs in our origin when clicked."""
    text = str(url or "")
    return text if urllib.parse.urlsplit(text).scheme in ("http", "https") else ""


templates.env.filters["web_link"] = web_link


def page_about(request: Request, ctx: PageContext, template: str, **data: Any) -> HTMLResponse:
    """A page about one project, for the session the page's dependency checked."""
    return page(request, template, ctx.session, project=ctx.config, **data)


def secure(request: Request, settings: ServiceSettings) -> bool:
    """Whether cookies carry `Secure`: forced by MELTANO_FORGE_SECURE_COOKIES=always (a TLS
    proxy that uvicorn does not trust makes every request look like plain http), else the
    request's scheme."""
    if settings.secure_cookies is SecureCookies.AUTO:
        return request.url.scheme == "https"
    return settings.secure_cookies is SecureCookies.ALWAYS


def set_private_cookie(
    response: Response,
    request: Request,
    settings: ServiceSettings,
    name: str,
    value: str,
    *,
    max_age: int,
    path: str = "/",
) -> None:
    """Every cookie the pages set: never readable by scripts, never sent cross-site, and
    `Secure` by the one rule above."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure(request, settings),
        path=path,
    )


def signin_page(
    request: Request, state: ServiceState, next: str, error: str = "", status: int = 200
) -> HTMLResponse:
    """The sign-in form, with a fresh login-CSRF token in its cookie and its hidden field."""
    nonce = sessions.signin_nonce()
    response = page(request, "signin.html", None, next=next, error=error, signin_csrf=nonce)
    response.status_code = status
    set_private_cookie(
        response,
        request,
        state.settings,
        sessions.SIGNIN_COOKIE,
        nonce,
        max_age=sessions.SIGNIN_LIFE,
        path="/signin",
    )
    return response


def signin_from_this_site(request: Request, offered: str | None) -> bool:
    """The sign-in form was posted from this site's sign-in page (login CSRF)."""
    return sessions.signin_csrf_ok(request.cookies.get(sessions.SIGNIN_COOKIE), offered)
