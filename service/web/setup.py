"""The initialization screen: the service started with no project waits here.

Only an admin session, or the one-time setup token printed at first start, may use it.
It asks for the provider, repository, forge token and branches; checks access against the
forge and shows what it found (default branch, permissions, whether `meltano.yml` exists);
then registers the project (its token in a 0600 file, never shown again) and, when asked
and the repository is empty, runs `meltano init` into it."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import SecretStr

from client.project_init import Initialized, init_repository
from providers.config import ForgeConfig, ProviderKind
from providers.errors import InvalidRequest, NotFound, ProviderError
from providers.local import LocalForge
from providers.names import check_branch_name
from providers.registry import locate, open_forge
from service.deps import ServiceState, StateDep
from service.problems import Problem
from service.settings import ProjectConfig, Role
from service.web import sessions, setup_store
from service.web.common import Redirect, current_session, page
from service.web.overview import set_cookie

router = APIRouter(include_in_schema=False)
PENDING_LIFE = 900.0
HOLDER_COOKIE = "mf_setup"


@dataclass
class Pending:
    """A checked setup waiting to be saved: the forge token stays on the server."""

    token: str
    values: dict[str, Any]
    created: float = field(default_factory=time.time)


def _admin(request: Request, state: ServiceState, form: dict[str, str]) -> bool:
    """An admin session whose form carries its CSRF token."""
    session = current_session(request, state)
    return (
        session is not None
        and session.may(Role.ADMIN)
        and sessions.csrf_ok(session, form.get("csrf"))
    )


def _holder(request: Request, state: ServiceState) -> bool:
    """A browser that gave the setup token on this screen a moment ago (its cookie), while
    the token is still unspent: it is not asked for the token on every form."""
    if state.projects.projects or setup_store.setup_token(state.settings, create=False) is None:
        return False
    since = state.setup_holders.get(request.cookies.get(HOLDER_COOKIE, ""))
    return since is not None and time.time() - since < PENDING_LIFE


def _allowed(request: Request, state: ServiceState, form: dict[str, str]) -> bool:
    """The setup token (given now, or a moment ago), or an admin session."""
    offered = form.get("setup_token", "")
    if (
        offered
        and not state.projects.projects
        and setup_store.setup_token_ok(state.settings, offered)
    ):
        return True
    return _holder(request, state) or _admin(request, state, form)


def _remember_holder(request: Request, state: ServiceState, response: Response) -> None:
    """After the setup token was given: a cookie (HttpOnly, SameSite=Strict) that stands for
    it, so it is never echoed back into a page."""
    holder = secrets.token_urlsafe(24)
    state.setup_holders[holder] = time.time()
    response.set_cookie(
        HOLDER_COOKIE,
        holder,
        max_age=int(PENDING_LIFE),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/setup",
    )


def _refused() -> Problem:
    return Problem(403, "Forbidden", "Only an admin, or the setup token, may set up projects")


def _config(values: dict[str, Any], token: str) -> ForgeConfig:
    try:
        location = locate(values["repo"], values["provider"], values["api_url"] or None)
    except InvalidRequest as exc:
        raise Problem(400, "Invalid repository", exc.reason) from exc
    return ForgeConfig(location, token=SecretStr(token) if token else None)


@router.get("/setup", response_class=HTMLResponse)
def setup_form(request: Request, state: StateDep) -> Response:
    """The form (for an admin, or whoever holds the setup token)."""
    session = current_session(request, state)
    admin = session is not None and session.may(Role.ADMIN)
    if state.projects.projects and not admin:
        raise Redirect("/signin?next=/setup")
    return page(
        request,
        "setup.html",
        session,
        admin=admin,
        holder=_holder(request, state),
        values={},
        found=None,
        error="",
    )


def _values(form: dict[str, str]) -> dict[str, Any]:
    return {
        "name": form.get("name", "").strip(),
        "provider": form.get("provider", "github"),
        "repo": form.get("repo", "").strip(),
        "api_url": form.get("api_url", "").strip(),
        "working_branch": form.get("working_branch", "development").strip() or "development",
        "protected_branches": form.get("protected_branches", "main,master").strip(),
        "initialize": form.get("initialize") == "on",
    }


@router.post("/setup/check", response_class=HTMLResponse)
async def check(request: Request, state: StateDep) -> Response:
    """Try the forge with what was given and show what it found; nothing is saved yet."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    session = current_session(request, state)
    if not _allowed(request, state, form):
        raise _refused()
    values = _values(form)
    error = ""
    found: dict[str, Any] | None = None
    try:
        check_branch_name(values["working_branch"])
        _check_new_name(state, values["name"])
        found = _inspect(values, form.get("forge_token", ""))
    except (ProviderError, Problem) as exc:
        error = _said(exc)
    pending_id = ""
    if found is not None:
        pending_id = secrets.token_urlsafe(16)
        _forget_old(state)
        state.setups[pending_id] = Pending(form.get("forge_token", ""), values)
    admin = session is not None and session.may(Role.ADMIN)
    response = page(
        request,
        "setup.html",
        session,
        admin=admin,
        holder=not admin,
        values=values,
        found=found,
        error=error,
        pending=pending_id,
    )
    if not admin and not _holder(request, state):
        _remember_holder(request, state, response)
    return response


def _to_create(config: ForgeConfig, values: dict[str, Any]) -> bool:
    """A local repository that is not there yet, which Save will create (when asked to)."""
    if config.location.kind is not ProviderKind.LOCAL:
        return False
    if (Path(config.location.api_url) / "HEAD").exists():
        return False
    if not values["initialize"]:
        msg = f"There is no git repository at {config.location.api_url}"
        raise InvalidRequest(msg, "Tick 'Run meltano init' to create one there")
    return True


def _inspect(values: dict[str, Any], token: str) -> dict[str, Any]:
    config = _config(values, token)
    if _to_create(config, values):
        return {
            "default_branch": "main",
            "empty": True,
            "web_url": config.location.web_url,
            "can_push": True,
            "default_can_push": True,
            "meltano_yml": False,
            "create": True,
        }
    forge = open_forge(config)
    try:
        info = forge.repository()
        found: dict[str, Any] = {
            "default_branch": info.default_branch,
            "empty": info.empty,
            "web_url": info.web_url,
            "can_push": info.can_push,
            "default_can_push": None,
            "meltano_yml": False,
            "create": False,
        }
        if not info.empty:
            branch = forge.branch(info.default_branch)
            found["default_can_push"] = branch.can_push
            try:
                forge.read_file(branch.head, "meltano.yml")
                found["meltano_yml"] = True
            except NotFound:
                pass
        return found
    finally:
        forge.close()


def _said(exc: Exception) -> str:
    """An error's reason and what to do, in the service's words."""
    if isinstance(exc, Problem):
        return exc.detail
    reason = getattr(exc, "reason", None) or str(exc)
    instruction = getattr(exc, "instruction", None)
    return f"{reason}. {instruction}" if instruction else reason


def _check_new_name(state: ServiceState, name: str) -> None:
    if state.projects.project(name) is not None:
        raise Problem(409, "Name taken", f"A project named '{name}' exists: choose another name")


def _initialize(
    state: ServiceState, config: ProjectConfig, values: dict[str, Any]
) -> Initialized | None:
    """Create a missing local repository and run `meltano init` into an empty one, when
    asked; before anything is registered, so a failure leaves no half-set-up project."""
    if not values["initialize"]:
        return None
    forge_config = config.forge_config()
    if forge_config.location.kind is ProviderKind.LOCAL:
        path = Path(forge_config.location.api_url)
        if not (path / "HEAD").exists() and path.exists() and any(path.iterdir()):
            msg = f"{path} holds files but no git repository"
            raise InvalidRequest(msg, "Choose an empty or new folder for the repository")
        LocalForge.create(forge_config)
    forge = open_forge(forge_config)
    try:
        if not forge.repository().empty:
            return None
        return init_repository(
            forge,
            meltano_bin=state.settings.meltano_bin,
            project_name=values["name"],
            working_branch=values["working_branch"],
            repo=values["repo"],
        )
    finally:
        forge.close()


def _forget_old(state: ServiceState) -> None:
    old = [k for k, p in state.setups.items() if time.time() - p.created > PENDING_LIFE]
    for key in old:
        state.setups.pop(key, None)
    for holder, since in list(state.setup_holders.items()):
        if time.time() - since > PENDING_LIFE:
            state.setup_holders.pop(holder, None)


@router.post("/setup/save", response_class=HTMLResponse)
async def save(request: Request, state: StateDep) -> Response:
    """Register the project, initialize an empty repository if asked, and (after a setup
    by setup token) sign in with a new admin API token, shown once."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    session = current_session(request, state)
    if not _allowed(request, state, form):
        raise _refused()
    held = state.setups.pop(form.get("pending", ""), None)
    if held is None or time.time() - held.created > PENDING_LIFE:
        raise Problem(400, "Expired", "Check the repository again, then save")
    values = held.values
    project = {
        "name": values["name"],
        "repo": values["repo"],
        "provider": values["provider"],
        "api_url": values["api_url"] or None,
        "working_branch": values["working_branch"],
        "protected_branches": [
            g.strip() for g in values["protected_branches"].split(",") if g.strip()
        ],
    }
    checked = ProjectConfig.model_validate({**project, "token": held.token or None})
    try:
        _check_new_name(state, checked.name)
        initialized = _initialize(state, checked, values)
    except (ProviderError, Problem) as exc:
        # Nothing is registered: fix the cause (install Meltano, free the name) and save again.
        state.setups[form.get("pending", "")] = held
        return page(
            request,
            "setup.html",
            session,
            admin=session is not None and session.may(Role.ADMIN),
            holder=_holder(request, state),
            values=values,
            found=None,
            error=_said(exc),
            pending="",
        )
    setup_store.register(state.settings, project, held.token)
    state.projects = state.settings.load_projects()
    config = state.projects.project(values["name"])
    assert config is not None  # noqa: S101 - just registered
    admin_token = ""
    response_session = session
    cookie = None
    if session is None or not session.may(Role.ADMIN):
        taken = {t.name for t in state.projects.tokens}
        name = next(n for n in ("admin", *(f"admin-{i}" for i in range(2, 1000))) if n not in taken)
        admin_token = setup_store.add_admin_token(state.settings, name)
        setup_store.consume_setup_token(state.settings)
        state.setup_holders.clear()
        state.projects = state.settings.load_projects()
        token = next(t for t in state.projects.tokens if t.name == name)
        cookie, response_session = sessions.start(state, token)
    response = page(
        request,
        "setup_done.html",
        response_session,
        project=config,
        initialized=initialized,
        admin_token=admin_token,
    )
    if cookie is not None and response_session is not None:
        set_cookie(response, cookie, response_session.expires_at, request)
    return response
