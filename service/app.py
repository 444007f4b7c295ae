"""The FastAPI app factory: settings in, app out; nothing global."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from client.policy import ReadOnlyBranch
from providers.config import ProviderKind
from providers.errors import ProviderError
from service import problems, redeploys
from service.archive_cache import ArchiveCache
from service.auth import BearerGate
from service.deps import ServiceState
from service.events import EventBroker
from service.outbox import OutboxPolicy, OutboxWorker
from service.routes import archive, collab, commits, deliveries, health, meltano, projects, webhooks
from service.settings import ServiceSettings
from service.storage import make_engine, migrate


def build_state(settings: ServiceSettings) -> ServiceState:
    """Load projects, open and migrate the database, prepare the cache."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    return ServiceState(
        settings,
        settings.load_projects(),
        engine,
        ArchiveCache(settings.cache_dir, settings.cache_max_bytes),
        EventBroker(),
    )


def startup_lines(state: ServiceState) -> list[str]:
    """What `serve` says as it starts: one line per project, or how to add one."""
    projects = state.projects.projects
    if not projects:
        return [
            "meltano-forge: no project is configured yet: open / in a browser to set one up, "
            "or list projects in MELTANO_FORGE_PROJECTS_FILE"
        ]
    lines = []
    for project in projects:
        location = project.forge_config().location
        lines.append(
            f"meltano-forge: project {project.name}: {location.kind.value} {location.web_url} "
            f"(working branch {project.working_branch})"
        )
    return lines


def hidden_paths(state: ServiceState) -> tuple[str, ...]:
    """Server paths that must never reach an API caller: local repositories, the cache."""
    paths = [str(state.settings.cache_dir.resolve())]
    for project in state.projects.projects:
        location = project.forge_config().location
        if location.kind is ProviderKind.LOCAL:
            paths.append(location.api_url)
    return tuple(sorted(paths, key=len, reverse=True))


def outbox_worker(state: ServiceState) -> OutboxWorker:
    """The delivery worker for this state's projects."""
    secrets = {
        (p.name, t.name): t.secret.get_secret_value()
        for p in state.projects.projects
        for t in p.deploy_targets
        if t.secret
    }
    settings = state.settings
    policy = OutboxPolicy(
        settings.outbox_max_attempts,
        settings.outbox_base_delay,
        lease_seconds=settings.outbox_lease_seconds,
    )
    return OutboxWorker(
        state.engine,
        secrets,
        policy,
        settings.outbox_interval,
        before_pass=lambda: redeploys.process_pending(state.engine, state.projects, state.forge),
    )


def create_app(
    settings: ServiceSettings | None = None,
    *,
    state: ServiceState | None = None,
    deliver: bool = True,
) -> FastAPI:
    """The app; `deliver=False` leaves the outbox to another process (or a test)."""
    service_state = state or build_state(settings or ServiceSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = outbox_worker(service_state) if deliver else None
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    app = FastAPI(
        title="meltano-forge",
        version="0.1.0",
        lifespan=lifespan,
        description="Git-aware Meltano projects over the GitHub and GitLab APIs.",
    )
    app.state.service = service_state
    app.state.hidden = hidden_paths(service_state)
    app.add_middleware(BearerGate, projects=service_state.projects)
    app.add_exception_handler(StarletteHTTPException, problems.handle_http)
    app.add_exception_handler(problems.Problem, problems.handle_problem)
    app.add_exception_handler(ProviderError, problems.handle_domain)
    app.add_exception_handler(ReadOnlyBranch, problems.handle_domain)
    app.add_exception_handler(RequestValidationError, problems.handle_validation)
    for module in (health, projects, archive, commits, meltano, collab, webhooks, deliveries):
        app.include_router(module.router)
    return app
