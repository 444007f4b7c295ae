"""Dependencies: the service state, the project of a route, and its caller's role, for
the API (a bearer token: `Reader`, `Writer`, `Admin`) and the pages (a signed-in session,
its CSRF token on every form: `WebReader`, `WebWriter`, `WebAdmin`). Both ask the same
`authorize` through `project_context`, so a page never decides access on its own."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Generic, TypeVar
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import Depends, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from client.policy import BranchPolicy
from providers.config import ProviderKind
from providers.contract import CommitMeta, Forge
from providers.registry import open_forge
from service import sessions
from service.archive_cache import ArchiveCache
from service.auth import authorize
from service.events import EventBroker
from service.heads import BranchHeads
from service.paging import Cursor, Limit, offset, page
from service.pending_setups import PendingSetups
from service.problems import Problem
from service.sessions import Session
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
    setups: PendingSetups = field(default_factory=PendingSetups)
    """The setup screen's checked setups and setup-token holders, between its steps."""
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


def project_context(
    state: ServiceState, header: str | None, project: str, role: Role
) -> ProjectContext:
    """The project `project` for the caller behind `Authorization: header`, if it may act
    there with `role`: 401 without a known token, 403 below it, 404 for no such project.
    The one access rule of routes and pages alike."""
    token = authorize(state.projects, header, project, role)
    config = state.projects.project(project)
    if config is None:
        raise Problem(404, "Not found", f"No project named '{project}'")
    policy = BranchPolicy(config.working_branch, config.protected_branches)
    return ProjectContext(config, state.forge(config), policy, token, state)


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
        return project_context(state, header, project, self.role)


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


@dataclass(frozen=True)
class Pages:
    """A list route's page: `?limit=` and `?cursor=`, and the response that carries the
    next page's `Link`."""

    request: Request
    response: Response
    limit: int
    cursor: str | None

    @property
    def through(self) -> int:
        """How many items to fetch to fill this page and know whether another follows."""
        return offset(self.cursor) + self.limit + 1

    def of(self, items: Sequence[K]) -> list[K]:
        """This page of `items` (and the `Link` to the next one)."""
        return page(items, self.request, self.response, self.limit, self.cursor)


def pages(
    request: Request, response: Response, limit: int = Limit, cursor: str | None = Cursor
) -> Pages:
    """The page a list route was asked for."""
    return Pages(request, response, limit, cursor)


Paged = Annotated[Pages, Depends(pages)]


class Redirect(Exception):
    """Answer a page with a redirect (see other): the sign-in page for a browser that is
    not signed in, the setup screen while no project is configured."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def current_session(request: Request, state: StateDep) -> Session | None:
    """The page's signed-in session, if any (its token must still be in force)."""
    return sessions.lookup(state, request.cookies.get(sessions.COOKIE))


async def offered_csrf(request: Request) -> str | None:
    """The CSRF token a form offers, on a request that may change something (None on a
    GET or HEAD, which change nothing). Starlette keeps the parsed form, so the route's
    own form fields are read from the same parse."""
    if request.method in ("GET", "HEAD"):
        return None
    offered = (await request.form()).get("csrf")
    return offered if isinstance(offered, str) else ""


def signed_in(
    request: Request,
    session: Annotated[Session | None, Depends(current_session)],
    offered: Annotated[str | None, Depends(offered_csrf)],
) -> Session:
    """The session; a person who is not signed in goes to the sign-in page first, and a
    form without the session's CSRF token is refused (403) before anything else is read."""
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise Redirect("/signin?" + urlencode({"next": target}, safe="/"))
    if offered is not None and not sessions.csrf_ok(session, offered):
        raise Problem(403, "Forbidden", "The form's CSRF token is missing or wrong; reload it")
    return session


Signed = Annotated[Session, Depends(signed_in)]
"""A signed-in page (and, on a form, its CSRF token checked)."""


@dataclass(frozen=True)
class PageContext(ProjectContext):
    """A page's project, as a route's, with the session the page is rendered for."""

    session: Session


class PageAccess:
    """The dependency behind `WebReader`, `WebWriter` and `WebAdmin`: the session (and its
    CSRF token on a form), then the page's project as the session's API token would get it
    from `Reader`, `Writer` or `Admin` (the same 403 and 404)."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def __call__(self, project: str, state: StateDep, session: Signed) -> PageContext:
        """Authorize the session's token, then find the project."""
        assert session.token.token is not None  # noqa: S101 - sessions need a token's secret
        header = f"Bearer {session.token.token.get_secret_value()}"
        ctx = project_context(state, header, project, self.role)
        return PageContext(ctx.config, ctx.forge, ctx.policy, ctx.token, ctx.state, session)


WebReader = Annotated[PageContext, Depends(PageAccess(Role.READ))]
WebWriter = Annotated[PageContext, Depends(PageAccess(Role.WRITE))]
WebAdmin = Annotated[PageContext, Depends(PageAccess(Role.ADMIN))]


def readable_projects(
    state: StateDep, session: Annotated[Session | None, Depends(current_session)]
) -> list[PageContext]:
    """Every project the session may read, each as its own page would get it (none while
    signed out): the projects overview asks `PageAccess`, not a copy of its rule."""
    if session is None:
        return []
    readable = []
    for config in state.projects.projects:
        try:
            readable.append(PageAccess(Role.READ)(config.name, state, session))
        except Problem as refused:
            if refused.status != 403:
                raise
    return readable


ReadableProjects = Annotated[list[PageContext], Depends(readable_projects)]
