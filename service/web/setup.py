"""The initialization screen: the service started with no project waits here.

Only an unscoped admin session (role admin, projects `*`: a project-scoped admin could
otherwise register another project's repository under a new name and read it), or the
one-time setup token printed at first start, may use it. It asks for the provider,
repository, forge token and branches; validates them all before anything is looked at
(422 with the rule); checks access against the forge and shows what it found (default
branch, permissions, whether `meltano.yml` exists); then registers the project (its token
in a 0600 file, never shown again) and, when asked and the repository is empty, runs
`meltano init` into it.

Local repositories live under one folder the environment names
(MELTANO_FORGE_LOCAL_REPOS_DIR, default `repos` in the data folder). A path is resolved
(symlinks followed) and refused, before any look at the disk, when it is not inside: the
screen never says whether an outside path exists or holds a repository.

The forge calls (with their retries) and `meltano init` block, so they run in a worker
thread: a slow forge never stalls `/healthz` or anyone else's page."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import SecretStr, ValidationError
from starlette.concurrency import run_in_threadpool

from client.project_init import Initialized, init_repository
from providers.config import ForgeConfig, ProviderKind
from providers.errors import InvalidRequest, NotFound, ProviderError, UnsafeInput
from providers.local import LocalForge
from providers.names import check_branch_name
from providers.registry import locate, open_forge
from service.deps import ServiceState, StateDep
from service.problems import Problem
from service.settings import PROJECT_NAME_RULE, ProjectConfig, Role
from service.web import sessions, setup_store
from service.web.common import Redirect, current_session, page, set_private_cookie
from service.web.overview import set_cookie
from service.web.sessions import Session

router = APIRouter(include_in_schema=False)
PENDING_LIFE = 900.0
HOLDER_COOKIE = "mf_setup"
PROVIDERS = ("github", "gitlab", "local")
"""What the screen sets up (a service project is a runner's setting, not a forge)."""
FIELD_MAX = 2048
"""Characters in any one field: URLs, branch globs and tokens all fit."""


@dataclass
class Pending:
    """A checked setup waiting to be saved: the forge token stays on the server."""

    token: str
    values: dict[str, Any]
    created: float = field(default_factory=time.time)


def may_set_up(session: Session | None) -> bool:
    """An admin of every project: setting one up gives its registrar all of it, so a
    token scoped to some projects may not."""
    return session is not None and session.may(Role.ADMIN) and "*" in session.token.projects


def _admin(request: Request, state: ServiceState, form: dict[str, str]) -> bool:
    """An unscoped admin session whose form carries its CSRF token."""
    session = current_session(request, state)
    return (
        session is not None and may_set_up(session) and sessions.csrf_ok(session, form.get("csrf"))
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
    set_private_cookie(
        response,
        request,
        state.settings,
        HOLDER_COOKIE,
        holder,
        max_age=int(PENDING_LIFE),
        path="/setup",
    )


def _refused() -> Problem:
    return Problem(
        403,
        "Forbidden",
        "Only an admin of every project (projects: ['*']), or the setup token, may set up projects",
    )


def _config(values: dict[str, Any], token: str) -> ForgeConfig:
    try:
        location = locate(values["repo"], values["provider"], values["api_url"] or None)
    except InvalidRequest as exc:
        raise Problem(422, "Invalid repository", exc.reason) from exc
    return ForgeConfig(location, token=SecretStr(token) if token else None)


@router.get("/setup", response_class=HTMLResponse)
def setup_form(request: Request, state: StateDep) -> Response:
    """The form (for an admin, or whoever holds the setup token)."""
    session = current_session(request, state)
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
        values={},
        found=None,
        error="",
        local_root=state.settings.local_repos_root,
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


def _invalid(detail: str) -> Problem:
    return Problem(422, "Invalid setup", detail)


def _globs(text: str) -> list[str]:
    """Protected branch globs: each a branch name once its wildcards are letters."""
    globs = [g.strip() for g in text.split(",") if g.strip()]
    for glob in globs:
        try:
            check_branch_name(glob.replace("*", "x").replace("?", "x"))
        except UnsafeInput as exc:
            msg = f"Protected branch '{glob}' is not a branch name or glob: {exc.reason}"
            raise _invalid(f"{msg}. {exc.instruction}") from None
    return globs


def _inside_root(state: ServiceState, values: dict[str, Any]) -> dict[str, Any]:
    """A local repository's path, resolved (symlinks followed) and inside the local
    repositories folder; refused before anything looks at the disk there, so the answer
    is the same for a path that exists, holds a repository, or does not exist."""
    location = _config(values, "").location
    if location.kind is not ProviderKind.LOCAL:
        return values
    root = state.settings.local_repos_root
    resolved = Path(location.api_url).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise _invalid(
            f"A local repository set up here must be a folder inside {root} (the folder "
            "MELTANO_FORGE_LOCAL_REPOS_DIR names). Choose a path there, e.g. "
            f"file://{root / 'warehouse.git'}"
        )
    return {**values, "repo": f"file://{resolved}", "provider": "local", "api_url": ""}


def validated(state: ServiceState, values: dict[str, Any]) -> dict[str, Any]:
    """Every field checked against the rules the projects file holds (the project name,
    branch names, the repository URL, a local repository's folder) before anything is
    looked at or saved: a `Problem` (422) that says which rule, or the values to use."""
    for key, value in values.items():
        if isinstance(value, str) and len(value) > FIELD_MAX:
            raise _invalid(f"The {key.replace('_', ' ')} is over {FIELD_MAX} characters")
    if values["provider"] not in PROVIDERS:
        raise _invalid(f"Unknown provider '{values['provider']}': choose {', '.join(PROVIDERS)}")
    try:
        ProjectConfig.model_validate({"name": values["name"], "repo": values["repo"] or "x"})
    except ValidationError:
        raise _invalid(
            f"'{values['name']}' is not a valid project name: {PROJECT_NAME_RULE}"
        ) from None
    try:
        check_branch_name(values["working_branch"])
    except UnsafeInput as exc:
        raise _invalid(f"Working branch: {exc.reason}. {exc.instruction}") from None
    _globs(values["protected_branches"])
    return _inside_root(state, values)


def _form_page(
    request: Request,
    state: ServiceState,
    session: Session | None,
    values: dict[str, Any],
    error: Exception | None,
    *,
    holder: bool,
    found: dict[str, Any] | None = None,
    pending: str = "",
) -> Response:
    """The form again, with what was given and why it was refused (422 for bad input)."""
    response = page(
        request,
        "setup.html",
        session,
        admin=may_set_up(session),
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


async def _form(request: Request) -> dict[str, str]:
    return {k: str(v) for k, v in (await request.form()).items()}


@router.post("/setup/check", response_class=HTMLResponse)
async def check(request: Request, state: StateDep) -> Response:
    """Try the forge with what was given and show what it found; nothing is saved yet.
    The work (the database, the forge and its retries) runs in a worker thread."""
    form = await _form(request)
    return await run_in_threadpool(_check, request, state, form)


def _check(request: Request, state: ServiceState, form: dict[str, str]) -> Response:
    session = current_session(request, state)
    if not _allowed(request, state, form):
        raise _refused()
    admin = may_set_up(session)
    known_holder = _holder(request, state)
    values = _values(form)
    error: Exception | None = None
    found: dict[str, Any] | None = None
    try:
        if len(form.get("forge_token", "")) > FIELD_MAX:
            raise _invalid(f"The forge token is over {FIELD_MAX} characters")
        values = validated(state, values)
        _check_new_name(state, values["name"])
        found = _inspect(values, form.get("forge_token", ""))
    except (ProviderError, Problem) as exc:
        error = exc
    pending_id = ""
    if found is not None:
        pending_id = secrets.token_urlsafe(16)
        _forget_old(state)
        state.setups[pending_id] = Pending(form.get("forge_token", ""), values)
    response = _form_page(
        request, state, session, values, error, holder=not admin, found=found, pending=pending_id
    )
    if not admin and not known_holder:
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
    by setup token) sign in with a new admin API token, shown once. `meltano init` and the
    forge run in a worker thread."""
    form = await _form(request)
    return await run_in_threadpool(_save, request, state, form)


def _save(request: Request, state: ServiceState, form: dict[str, str]) -> Response:
    session = current_session(request, state)
    if not _allowed(request, state, form):
        raise _refused()
    held = state.setups.pop(form.get("pending", ""), None)
    if held is None or time.time() - held.created > PENDING_LIFE:
        raise Problem(400, "Expired", "Check the repository again, then save")
    values = held.values
    try:
        values = validated(state, values)  # again: the folders may have changed since
        project = {
            "name": values["name"],
            "repo": values["repo"],
            "provider": values["provider"],
            "api_url": values["api_url"] or None,
            "working_branch": values["working_branch"],
            "protected_branches": _globs(values["protected_branches"]),
        }
        checked = ProjectConfig.model_validate({**project, "token": held.token or None})
        _check_new_name(state, checked.name)
        initialized = _initialize(state, checked, values)
    except (ProviderError, Problem, ValidationError) as exc:
        # Nothing is registered: fix the cause (install Meltano, free the name) and save again.
        state.setups[form.get("pending", "")] = held
        refusal = _invalid(_first_error(exc)) if isinstance(exc, ValidationError) else exc
        return _form_page(request, state, session, values, refusal, holder=_holder(request, state))
    setup_store.register(state.settings, project, held.token)
    state.projects = state.settings.load_projects()
    config = state.projects.project(values["name"])
    assert config is not None  # noqa: S101 - just registered
    admin_token = ""
    response_session = session
    cookie = None
    if not may_set_up(session):
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


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
