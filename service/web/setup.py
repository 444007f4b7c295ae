"""The initialization screen: the service started with no project waits here.

Only an unscoped admin session (role admin, projects `*`: a project-scoped admin could
otherwise register another project's repository under a new name and read it), or the
one-time setup token printed at first start, may use it. It asks for the provider,
repository, forge token and branches; validates them all before anything is looked at
(422 with the rule); checks access against the forge and shows what it found (default
branch, permissions, whether `meltano.yml` exists); then registers the project (its token
in a 0600 file, never shown again) and, when asked and the repository is empty, runs
`meltano init` into it. The checks, the look at the forge and the registration are
`project_setup`'s; this module reads the forms, decides who may use them, and shows what
they answered.

The forge calls (with their retries) and `meltano init` block, so they run in a worker
thread: a slow forge never stalls `/healthz` or anyone else's page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool

from providers.errors import ProviderError
from service import sessions
from service.deps import Redirect, ServiceState, StateDep, current_session
from service.pending_setups import PENDING_LIFE, Pending, SetupValues
from service.problems import Problem
from service.sessions import Session
from service.settings import Role
from service.web import project_setup, setup_store
from service.web.common import page, set_private_cookie
from service.web.overview import set_cookie
from service.web.project_setup import Found

router = APIRouter(include_in_schema=False)
HOLDER_COOKIE = "mf_setup"


class SetupForm(SetupValues):
    """The setup screen's form, both steps (Check access, then Save): the project, and
    what stays on the server."""

    forge_token: str = ""
    pending: str = ""
    """The checked setup that Save registers."""

    def values(self) -> SetupValues:
        """The project as given."""
        return SetupValues.model_validate(self.model_dump(include=set(SetupValues.model_fields)))


@dataclass(frozen=True)
class SetupCaller:
    """Who uses the screen: an unscoped admin session, or whoever holds the setup token."""

    session: Session | None
    admin: bool
    holder: bool
    """A browser that gave the setup token a moment ago (its cookie)."""


def may_set_up(session: Session | None) -> bool:
    """An admin of every project: setting one up gives its registrar all of it, so a
    token scoped to some projects may not."""
    return session is not None and session.may(Role.ADMIN) and "*" in session.token.projects


def _holder(request: Request, state: ServiceState) -> bool:
    """A browser that gave the setup token on this screen a moment ago (its cookie), while
    the token is still unspent: it is not asked for the token on every form."""
    if state.projects.projects or setup_store.setup_token(state.settings, create=False) is None:
        return False
    return state.setups.is_holder(request.cookies.get(HOLDER_COOKIE, ""))


async def _offered(request: Request) -> tuple[str, str]:
    """The form's setup token and CSRF token (read before the rest of the form is)."""
    form = await request.form()
    token, csrf = form.get("setup_token"), form.get("csrf")
    return (token if isinstance(token, str) else "", csrf if isinstance(csrf, str) else "")


def setup_caller(
    request: Request,
    state: StateDep,
    session: Annotated[Session | None, Depends(current_session)],
    offered: Annotated[tuple[str, str], Depends(_offered)],
) -> SetupCaller:
    """The dependency of the screen's forms: the setup token (given now, or a moment ago),
    or an unscoped admin session whose form carries its CSRF token; 403 for anyone else,
    before the form is looked at."""
    token, csrf = offered
    admin = may_set_up(session)
    holder = _holder(request, state)
    by_token = (
        bool(token)
        and not state.projects.projects
        and setup_store.setup_token_ok(state.settings, token)
    )
    signed_admin = session is not None and admin and sessions.csrf_ok(session, csrf)
    if not (by_token or holder or signed_admin):
        raise _refused()
    return SetupCaller(session, admin, holder)


Caller = Annotated[SetupCaller, Depends(setup_caller)]


def _remember_holder(request: Request, state: ServiceState, response: Response) -> None:
    """After the setup token was given: a cookie (HttpOnly, SameSite=Strict) that stands for
    it, so it is never echoed back into a page."""
    set_private_cookie(
        response,
        request,
        state.settings,
        HOLDER_COOKIE,
        state.setups.add_holder(),
        max_age=int(PENDING_LIFE),
        path="/setup",
    )


def _refused() -> Problem:
    return Problem(
        403,
        "Forbidden",
        "Only an admin of every project (projects: ['*']), or the setup token, may set up projects",
    )


@router.get("/setup", response_class=HTMLResponse)
def setup_form(
    request: Request,
    state: StateDep,
    session: Annotated[Session | None, Depends(current_session)],
) -> Response:
    """The form (for an admin, or whoever holds the setup token)."""
    admin = may_set_up(session)
    if state.projects.projects and session is None:
        raise Redirect("/signin?next=/setup")
    if state.projects.projects and not admin:
        raise _refused()
    return page(
        request,
        "setup.html",
        session,
        admin=admin,
        holder=_holder(request, state),
        values=SetupValues(),
        found=None,
        error="",
        local_root=state.settings.local_repos_root,
    )


def _form_page(
    request: Request,
    state: ServiceState,
    caller: SetupCaller,
    values: SetupValues,
    error: Exception | None,
    *,
    holder: bool,
    found: Found | None = None,
    pending: str = "",
) -> Response:
    """The form again, with what was given and why it was refused (422 for bad input)."""
    response = page(
        request,
        "setup.html",
        caller.session,
        admin=caller.admin,
        holder=holder,
        values=values,
        found=found,
        error=_said(error) if error else "",
        pending=pending,
        local_root=state.settings.local_repos_root,
    )
    if isinstance(error, Problem):
        response.status_code = error.status
    return response


@router.post("/setup/check", response_class=HTMLResponse)
async def check(
    request: Request, state: StateDep, caller: Caller, form: Annotated[SetupForm, Form()]
) -> Response:
    """Try the forge with what was given and show what it found; nothing is saved yet.
    The work (the database, the forge and its retries) runs in a worker thread."""
    return await run_in_threadpool(_check, request, state, caller, form)


def _check(request: Request, state: ServiceState, caller: SetupCaller, form: SetupForm) -> Response:
    values = form.values()
    error: Exception | None = None
    found: Found | None = None
    try:
        values = project_setup.validated(state, values, form.forge_token)
        found = project_setup.check_access(state, values, form.forge_token)
    except (ProviderError, Problem) as exc:
        error = exc
    pending_id = ""
    if found is not None:
        pending_id = state.setups.hold(Pending(SecretStr(form.forge_token), values))
    response = _form_page(
        request,
        state,
        caller,
        values,
        error,
        holder=not caller.admin,
        found=found,
        pending=pending_id,
    )
    if not caller.admin and not caller.holder:
        _remember_holder(request, state, response)
    return response


def _said(exc: Exception) -> str:
    """An error's reason and what to do, in the service's words."""
    if isinstance(exc, Problem):
        return exc.detail
    reason = getattr(exc, "reason", None) or str(exc)
    instruction = getattr(exc, "instruction", None)
    return f"{reason}. {instruction}" if instruction else reason


@router.post("/setup/save", response_class=HTMLResponse)
async def save(
    request: Request, state: StateDep, caller: Caller, form: Annotated[SetupForm, Form()]
) -> Response:
    """Register the project, initialize an empty repository if asked, and (after a setup
    by setup token) sign in with a new admin API token, shown once. `meltano init` and the
    forge run in a worker thread."""
    return await run_in_threadpool(_save, request, state, caller, form.pending)


def _save(request: Request, state: ServiceState, caller: SetupCaller, pending: str) -> Response:
    held = state.setups.take(pending)
    if held is None:
        raise Problem(400, "Expired", "Check the repository again, then save")
    try:
        done = project_setup.register(state, held.values, held.token, first_admin=not caller.admin)
    except (ProviderError, Problem) as exc:
        # Nothing is registered: fix the cause (install Meltano, free the name) and save again.
        state.setups.put_back(pending, held)
        holder = _holder(request, state)
        return _form_page(request, state, caller, held.values, exc, holder=holder)
    cookie, session = done.session or (None, caller.session)
    response = page(
        request,
        "setup_done.html",
        session,
        project=done.config,
        initialized=done.initialized,
        admin_token=done.admin_token,
    )
    if cookie is not None and session is not None:
        set_cookie(response, cookie, session.expires_at, request)
    return response
