"""Dependencies: the service state, the project of a route, and its caller's role."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Header, Request

from client.policy import BranchPolicy
from providers.contract import Forge
from providers.registry import open_forge
from service.archive_cache import ArchiveCache
from service.auth import authorize
from service.events import EventBroker
from service.problems import Problem
from service.settings import ApiToken, ProjectConfig, ProjectsFile, Role, ServiceSettings


@dataclass
class ServiceState:
    """Everything built once per app: settings, database, forges, cache, events."""

    settings: ServiceSettings
    projects: ProjectsFile
    engine: sa.Engine
    cache: ArchiveCache
    events: EventBroker
    _forges: dict[str, Forge] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def forge(self, project: ProjectConfig) -> Forge:
        """The project's adapter (one per project, shared by requests)."""
        with self._lock:
            if project.name not in self._forges:
                self._forges[project.name] = open_forge(project.forge_config())
            return self._forges[project.name]

    def close(self) -> None:
        """Close adapters and the database pool."""
        for forge in self._forges.values():
            forge.close()
        self.engine.dispose()


@dataclass(frozen=True)
class ProjectContext:
    """A route's project: its configuration, adapter and branch policy."""

    config: ProjectConfig
    forge: Forge
    policy: BranchPolicy
    token: ApiToken | None


def get_state(request: Request) -> ServiceState:
    """The app's state (set by the factory; tests build their own app)."""
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def _project(role: Role):  # type: ignore[no-untyped-def]
    def dependency(
        project: str, state: StateDep, authorization: Annotated[str | None, Header()] = None
    ) -> ProjectContext:
        token = authorize(state.projects, authorization, project, role)
        config = state.projects.project(project)
        if config is None:
            raise Problem(404, "Not found", f"No project named '{project}'")
        policy = BranchPolicy(config.working_branch, config.protected_branches)
        return ProjectContext(config, state.forge(config), policy, token)

    return dependency


Reader = Annotated[ProjectContext, Depends(_project(Role.READ))]
Writer = Annotated[ProjectContext, Depends(_project(Role.WRITE))]
