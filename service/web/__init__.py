"""The web UI: pages served by `serve` at `/`, over the same service functions as the API.

Pages are rendered on the server and readable without JavaScript; `static/app.js` adds the
drafts, the "You have uncommitted changes" prompt, live updates over the API's event stream
and the editor's YAML check. One module per page group: `overview` (sign-in, projects, a
project), `editor` (edit, commit, pull, forms), `review` (compare and promote, workspaces,
deliveries), `setup` (the initialization screen, over `project_setup` and `setup_store`).
Who may see a page is decided by `service.deps` (`WebReader`, `WebWriter`, `WebAdmin`:
the session, its role, its CSRF token on every form), as for the API's routes; what a
page does is `service.operations`' (or `project_setup`'s), so no page holds a rule."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from service import sessions
from service.deps import Redirect, ServiceState, current_session
from service.web import editor, overview, review, setup
from service.web.common import HERE, handle_redirect, page


def mount(app: FastAPI) -> None:
    """Add the pages, their static files and their redirects to the app."""
    app.add_exception_handler(Redirect, handle_redirect)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (overview, editor, review, setup):
        app.include_router(module.router)


def bearer_for_cookie(state: ServiceState, pair: str) -> str | None:
    """`Authorization` for a session cookie (`name=value`), so the API decides as usual."""
    name, _, value = pair.partition("=")
    if name != sessions.COOKIE:
        return None
    session = sessions.lookup(state, value)
    if session is None or session.token.token is None:
        return None
    return f"Bearer {session.token.token.get_secret_value()}"


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    """An error, as a page (the API answers problem+json instead)."""
    state = request.app.state.service
    response = page(
        request, "error.html", current_session(request, state), title=title, detail=detail
    )
    response.status_code = status
    return response
