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

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import SecretStr, ValidationError
from starlette.concurrency import run_in_threadpool

from client.project_init import Initialized, init_repository
from providers.config import ForgeConfig, ProviderKind
from providers.errors import InvalidRequest, NotFound, ProviderError, UnsafeInput
from providers.local import LocalForge
from providers.names import check_branch_name
from providers.registry import locate, open_forge
from service import sessions
from service.deps import Redirect, ServiceState, StateDep, current_session
from service.pending_setups import PENDING_LIFE, Pending, SetupValues
from service.problems import Problem
from service.sessions import Session
from service.settings import PROJECT_NAME_RULE, ProjectConfig, Role
from service.web import setup_store
from service.web.common import page, set_private_cookie
from service.web.overview import set_cookie

router = APIRouter(include_in_schema=False)
HOLDER_COOKIE = "mf_setup"
PROVIDERS = ("github", "gitlab", "local")
"""What the screen sets up (a service project is a runner's setting, not a forge)."""
FIELD_MAX = 2048
"""Characters in any one field: URLs, branch globs and tokens all fit."""


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
class Found:
    """What the forge says about the repository (or what Save will create)."""

    default_branch: str
    empty: bool
    web_url: str
    can_push: bool | None
    default_can_push: bool | None = None
    meltano_yml: bool = False
    create: bool = False
    """A local repository that is not there yet."""


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


def _config(values: SetupValues, token: str) -> ForgeConfig:
    try:
        location = locate(values.repo, values.provider, values.api_url or None)
    except InvalidRequest as exc:
        raise Problem(422, "Invalid repository", exc.reason) from exc
    return ForgeConfig(location, token=SecretStr(token) if token else None)


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


def _inside_root(state: ServiceState, values: SetupValues) -> SetupValues:
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
    local = {"repo": f"file://{resolved}", "provider": "local", "api_url": ""}
    return values.model_copy(update=local)


def validated(state: ServiceState, values: SetupValues) -> SetupValues:
    """Every field checked against the rules the projects file holds (the project name,
    branch names, the repository URL, a local repository's folder) before anything is
    looked at or saved: a `Problem` (422) that says which rule, or the values to use."""
    for key, value in values.model_dump().items():
        if isinstance(value, str) and len(value) > FIELD_MAX:
            raise _invalid(f"The {key.replace('_', ' ')} is over {FIELD_MAX} characters")
    if values.provider not in PROVIDERS:
        raise _invalid(f"Unknown provider '{values.provider}': choose {', '.join(PROVIDERS)}")
    try:
        ProjectConfig.model_validate({"name": values.name, "repo": values.repo or "x"})
    except ValidationError:
        raise _invalid(
            f"'{values.name}' is not a valid project name: {PROJECT_NAME_RULE}"
        ) from None
    try:
        check_branch_name(values.working_branch)
    except UnsafeInput as exc:
        raise _invalid(f"Working branch: {exc.reason}. {exc.instruction}") from None
    _globs(values.protected_branches)
    return _inside_root(state, values)


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
        if len(form.forge_token) > FIELD_MAX:
            raise _invalid(f"The forge token is over {FIELD_MAX} characters")
        values = validated(state, values)
        _check_new_name(state, values.name)
        found = _inspect(values, form.forge_token)
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


def _to_create(config: ForgeConfig, values: SetupValues) -> bool:
    """A local repository that is not there yet, which Save will create (when asked to)."""
    if config.location.kind is not ProviderKind.LOCAL:
        return False
    if (Path(config.location.api_url) / "HEAD").exists():
        return False
    if not values.initialize:
        msg = f"There is no git repository at {config.location.api_url}"
        raise InvalidRequest(msg, "Tick 'Run meltano init' to create one there")
    return True


def _inspect(values: SetupValues, token: str) -> Found:
    config = _config(values, token)
    if _to_create(config, values):
        return Found("main", True, config.location.web_url, True, True, create=True)
    forge = open_forge(config)
    try:
        info = forge.repository()
        if info.empty:
            return Found(info.default_branch, True, info.web_url, info.can_push)
        branch = forge.branch(info.default_branch)
        try:
            forge.read_file(branch.head, "meltano.yml")
        except NotFound:
            has_meltano_yml = False
        else:
            has_meltano_yml = True
        return Found(
            info.default_branch,
            False,
            info.web_url,
            info.can_push,
            branch.can_push,
            meltano_yml=has_meltano_yml,
        )
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
    state: ServiceState, config: ProjectConfig, values: SetupValues
) -> Initialized | None:
    """Create a missing local repository and run `meltano init` into an empty one, when
    asked; before anything is registered, so a failure leaves no half-set-up project."""
    if not values.initialize:
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
            project_name=values.name,
            working_branch=values.working_branch,
            repo=values.repo,
        )
    finally:
        forge.close()


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
    values = held.values
    forge_token = held.token.get_secret_value()
    try:
        values = validated(state, values)  # again: the folders may have changed since
        entry = setup_store.project_entry(values, _globs(values.protected_branches))
        checked = ProjectConfig.model_validate({**entry, "token": forge_token or None})
        _check_new_name(state, checked.name)
        initialized = _initialize(state, checked, values)
    except (ProviderError, Problem, ValidationError) as exc:
        # Nothing is registered: fix the cause (install Meltano, free the name) and save again.
        state.setups.put_back(pending, held)
        refusal = _invalid(_first_error(exc)) if isinstance(exc, ValidationError) else exc
        return _form_page(request, state, caller, values, refusal, holder=_holder(request, state))
    setup_store.register(state.settings, entry, forge_token)
    state.projects = state.settings.load_projects()
    config = state.projects.project(values.name)
    assert config is not None  # noqa: S101 - just registered
    admin_token = ""
    response_session = caller.session
    cookie = None
    if not caller.admin:
        taken = {t.name for t in state.projects.tokens}
        name = next(n for n in ("admin", *(f"admin-{i}" for i in range(2, 1000))) if n not in taken)
        admin_token = setup_store.add_admin_token(state.settings, name)
        setup_store.consume_setup_token(state.settings)
        state.setups.forget_holders()
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
