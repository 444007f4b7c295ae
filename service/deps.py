"""Dependencies: the service state, the project of a route, and its caller's role."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from client.policy import BranchPolicy
from providers.config import ProviderKind
from providers.contract import CommitMeta, Forge
from providers.registry import open_forge
from service.archive_cache import ArchiveCache
from service.auth import authorize
from service.events import EventBroker
from service.heads import BranchHeads
from service.problems import Problem
from service.settings import ApiToken, ProjectConfig, ProjectsFile, Role, ServiceSettings

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """A bounded map of facts that never change (a commit's metadata, counts between two
    commits): the oldest entries go first when it is full."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The remembered value, if any."""
        with self._lock:
            return self._items.get(key)

    def __setitem__(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


@dataclass
class ServiceState:
    """Everything built once per app: settings, database, forges, cache, events."""

    settings: ServiceSettings
    projects: ProjectsFile
    engine: sa.Engine
    cache: ArchiveCache
    events: EventBroker
    heads: BranchHeads = field(default_factory=BranchHeads)
    metas: Memo[tuple[str, str], CommitMeta] = field(default_factory=lambda: Memo(4096))
    """(project, sha) -> commit metadata: a commit never changes."""
    counts: Memo[tuple[str, str, str], tuple[int, int]] = field(default_factory=lambda: Memo(4096))
    """(project, base, head) -> (ahead, behind)."""
    setups: dict[str, Any] = field(default_factory=dict)
    """Checked setups waiting to be saved (the web setup screen), by a random id."""
    setup_holders: dict[str, float] = field(default_factory=dict)
    """Browsers that gave the setup token (their cookie's random id -> when)."""
    _forges: dict[str, tuple[ProjectConfig, Forge]] = field(default_factory=dict)
    _retired: list[Forge] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _commit_locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)

    def commit_lock(self, project: str, branch: str) -> threading.Lock:
        """One commit at a time per branch in this process: concurrent commits to one
        branch would only race for its ref and retry against each other."""
        with self._lock:
            return self._commit_locks.setdefault((project, branch), threading.Lock())

    def hidden_paths(self) -> tuple[str, ...]:
        """Server paths that must never reach an API caller: local repositories, the cache
        (longest first, so a repository inside the cache folder is hidden whole)."""
        paths = [str(self.settings.cache_dir.resolve())]
        for project in self.projects.projects:
            location = project.forge_config().location
            if location.kind is ProviderKind.LOCAL:
                paths.append(location.api_url)
        return tuple(sorted(paths, key=len, reverse=True))

    def forge(self, project: ProjectConfig) -> Forge:
        """The project's adapter (one per project, shared by requests). A project whose
        configuration changed in the projects file (another repository, a new token) gets
        a new adapter at once: the old one would go on using what was removed."""
        with self._lock:
            held = self._forges.get(project.name)
            if held is None or held[0] != project:
                if held is not None:
                    self._retired.append(held[1])  # requests in flight may still use it
                    self.heads.forget(project.name)
                config = project.forge_config(self.settings.limits)
                held = (project, open_forge(config))
                self._forges[project.name] = held
            return held[1]

    def close(self) -> None:
        """Close adapters and the database pool."""
        for forge in [*(f for _, f in self._forges.values()), *self._retired]:
            forge.close()
        self.engine.dispose()


@dataclass(frozen=True)
class ProjectContext:
    """A route's project: its configuration, adapter, branch policy and the service."""

    config: ProjectConfig
    forge: Forge
    policy: BranchPolicy
    token: ApiToken | None
    state: ServiceState


def get_state(request: Request) -> ServiceState:
    """The app's state (set by the factory; tests build their own app)."""
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


class ProjectAccess:
    """The dependency behind `Reader`, `Writer` and `Admin`: the route's project, for a
    token that may act on it with `role` (401 without a known token, 403 below it)."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def __call__(
        self,
        project: str,
        state: StateDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> ProjectContext:
        """Authorize, then find the project."""
        header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
        token = authorize(state.projects, header, project, self.role)
        config = state.projects.project(project)
        if config is None:
            raise Problem(404, "Not found", f"No project named '{project}'")
        policy = BranchPolicy(config.working_branch, config.protected_branches)
        return ProjectContext(config, state.forge(config), policy, token, state)


class TokenAccess:
    """The dependency behind `Viewer`: a known token with at least `role`, any project."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def __call__(
        self,
        state: StateDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> ApiToken:
        """The token."""
        header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
        return authorize(state.projects, header, None, self.role)


BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token from the projects file; its role (read, write, admin) and "
    "projects decide what it may do. Each operation names the role it needs as a scope.",
)
Reader = Annotated[ProjectContext, Security(ProjectAccess(Role.READ), scopes=["read"])]
Writer = Annotated[ProjectContext, Security(ProjectAccess(Role.WRITE), scopes=["write"])]
Admin = Annotated[ProjectContext, Security(ProjectAccess(Role.ADMIN), scopes=["admin"])]
Viewer = Annotated[ApiToken, Security(TokenAccess(Role.READ), scopes=["read"])]
