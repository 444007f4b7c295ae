"""Setting a project up, before and as it is registered: every field checked against the
projects file's rules, a look at the forge (what it says about the repository, or that a
local one will be created), `meltano init` into an empty repository, the registration,
and the first admin token after a setup by setup token. The setup screen (`setup`) only
reads its forms and shows what these answered.

Local repositories live under one folder the environment names
(MELTANO_FORGE_LOCAL_REPOS_DIR, default `repos` in the data folder). A path is resolved
(symlinks followed) and refused, before any look at the disk, when it is not inside: the
screen never says whether an outside path exists or holds a repository."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr, ValidationError

from client.project_init import Initialized, init_repository
from providers.config import ForgeConfig, ProviderKind
from providers.errors import InvalidRequest, NotFound, UnsafeInput
from providers.local import LocalForge
from providers.names import check_branch_name
from providers.registry import locate, open_forge
from service import sessions
from service.deps import ServiceState
from service.pending_setups import SetupValues
from service.problems import Problem
from service.sessions import Session
from service.settings import PROJECT_NAME_RULE, ProjectConfig
from service.web import setup_store

PROVIDERS = ("github", "gitlab", "local")
"""What the screen sets up (a service project is a runner's setting, not a forge)."""
FIELD_MAX = 2048
"""Characters in any one field: URLs, branch globs and tokens all fit."""


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


def _config(values: SetupValues, token: str) -> ForgeConfig:
    """Where the repository is (422 for a URL the providers cannot place), with the token."""
    try:
        location = locate(values.repo, values.provider, values.api_url or None)
    except InvalidRequest as exc:
        raise Problem(422, "Invalid repository", exc.reason) from exc
    return ForgeConfig(location, token=SecretStr(token) if token else None)


def invalid(detail: str) -> Problem:
    """A setup refused for its input (422), with the rule it broke."""
    return Problem(422, "Invalid setup", detail)


def _globs(text: str) -> list[str]:
    """Protected branch globs: each a branch name once its wildcards are letters."""
    globs = [g.strip() for g in text.split(",") if g.strip()]
    for glob in globs:
        try:
            check_branch_name(glob.replace("*", "x").replace("?", "x"))
        except UnsafeInput as exc:
            msg = f"Protected branch '{glob}' is not a branch name or glob: {exc.reason}"
            raise invalid(f"{msg}. {exc.instruction}") from None
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
        raise invalid(
            f"A local repository set up here must be a folder inside {root} (the folder "
            "MELTANO_FORGE_LOCAL_REPOS_DIR names). Choose a path there, e.g. "
            f"file://{root / 'warehouse.git'}"
        )
    local = {"repo": f"file://{resolved}", "provider": "local", "api_url": ""}
    return values.model_copy(update=local)


def validated(state: ServiceState, values: SetupValues, forge_token: str = "") -> SetupValues:
    """Every field checked against the rules the projects file holds (the project name,
    branch names, the repository URL, a local repository's folder) before anything is
    looked at or saved: a `Problem` (422) that says which rule, or the values to use."""
    if len(forge_token) > FIELD_MAX:
        raise invalid(f"The forge token is over {FIELD_MAX} characters")
    for key, value in values.model_dump().items():
        if isinstance(value, str) and len(value) > FIELD_MAX:
            raise invalid(f"The {key.replace('_', ' ')} is over {FIELD_MAX} characters")
    if values.provider not in PROVIDERS:
        raise invalid(f"Unknown provider '{values.provider}': choose {', '.join(PROVIDERS)}")
    try:
        ProjectConfig.model_validate({"name": values.name, "repo": values.repo or "x"})
    except ValidationError:
        raise invalid(f"'{values.name}' is not a valid project name: {PROJECT_NAME_RULE}") from None
    try:
        check_branch_name(values.working_branch)
    except UnsafeInput as exc:
        raise invalid(f"Working branch: {exc.reason}. {exc.instruction}") from None
    _globs(values.protected_branches)
    return _inside_root(state, values)


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
    """What the forge says about the repository (nothing is changed there)."""
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


def _check_new_name(state: ServiceState, name: str) -> None:
    """A name no project has yet (409 otherwise)."""
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


def check_access(state: ServiceState, values: SetupValues, forge_token: str) -> Found:
    """Ask the forge about a validated setup before anything is saved: a free name, and
    what the forge answers with this token (a `Problem` or a `ProviderError` that says
    what to fix)."""
    _check_new_name(state, values.name)
    return _inspect(values, forge_token)


@dataclass(frozen=True)
class Registered:
    """A project set up: its configuration, what `meltano init` made, and (after a setup by
    setup token) the first admin API token and its session."""

    config: ProjectConfig
    initialized: Initialized | None
    admin_token: str = ""
    session: tuple[str, Session] | None = None
    """(cookie, session) for the new admin token."""


def register(
    state: ServiceState, values: SetupValues, forge_token: SecretStr, *, first_admin: bool
) -> Registered:
    """Check the setup again (the folders may have changed since), initialize an empty
    repository if asked, then register the project (its forge token in a 0600 file). With
    `first_admin`, the setup token is spent for a new admin API token, shown once. Nothing
    is registered when a check or `meltano init` fails."""
    values = validated(state, values)
    entry = setup_store.project_entry(values, _globs(values.protected_branches))
    token = forge_token.get_secret_value()
    try:
        checked = ProjectConfig.model_validate({**entry, "token": token or None})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise invalid(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}") from None
    _check_new_name(state, checked.name)
    initialized = _initialize(state, checked, values)
    setup_store.register(state.settings, entry, token)
    state.projects = state.settings.load_projects()
    config = state.projects.project(values.name)
    assert config is not None  # noqa: S101 - just registered
    if not first_admin:
        return Registered(config, initialized)
    taken = {t.name for t in state.projects.tokens}
    name = next(n for n in ("admin", *(f"admin-{i}" for i in range(2, 1000))) if n not in taken)
    admin_token = setup_store.add_admin_token(state.settings, name)
    setup_store.consume_setup_token(state.settings)
    state.setups.forget_holders()
    state.projects = state.settings.load_projects()
    admin = next(t for t in state.projects.tokens if t.name == name)
    return Registered(config, initialized, admin_token, sessions.start(state, admin))
