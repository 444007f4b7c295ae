"""The FastAPI app factory: settings in, app out; nothing global."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from client.policy import ReadOnlyBranch
from providers.errors import ProviderError
from service import problems, redeploys, web
from service.archive_cache import ArchiveCache
from service.auth import BearerGate, ProjectsWatch
from service.body_limits import BodyLimit
from service.deps import ServiceState
from service.events import EventBroker
from service.outbox import OutboxPolicy, OutboxWorker
from service.plugin_envs import PluginEnvs
from service.pull_checks import check_worker
from service.routes import (
    archive,
    collab,
    commits,
    deliveries,
    health,
    meltano,
    plugin_envs,
    projects,
    webhooks,
)
from service.routes import checks as check_routes
from service.settings import ServiceSettings
from service.storage import make_engine, migrate
from service.web import setup_store


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


def plugin_env_store(settings: ServiceSettings) -> PluginEnvs | None:
    """The plugin cache the service holds for its runners, when it is given a folder."""
    if settings.service_plugin_cache is None:
        return None
    return PluginEnvs(
        settings.service_plugin_cache,
        settings.service_plugin_cache_max_bytes,
        settings.service_plugin_lease_seconds,
    )


def startup_lines(state: ServiceState) -> list[str]:
    """What `serve` says as it starts: one line per project, or how to add one."""
    projects = state.projects.projects
    if not projects:
        token = setup_store.setup_token(state.settings, create=True)
        return [
            "meltano-forge: no project is configured yet: open / in a browser to set one up, "
            "or list projects in MELTANO_FORGE_PROJECTS_FILE",
            f"meltano-forge: the one-time setup token is {token} (also in "
            f"{state.settings.data_dir / setup_store.SETUP_TOKEN_FILE}; it stops working once "
            "a project is set up)",
        ]
    setup_store.consume_setup_token(state.settings)  # projects exist: no setup by token
    lines = []
    for project in projects:
        location = project.forge_config().location
        lines.append(
            f"meltano-forge: project {project.name}: {location.kind.value} {location.web_url} "
            f"(working branch {project.working_branch})"
        )
    return lines


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
        checker = check_worker(service_state) if deliver else None  # PR/MR and push checks
        if checker is not None:
            checker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            if checker is not None:
                checker.stop()

    app = FastAPI(
        title="meltano-forge",
        version="0.1.0",
        lifespan=lifespan,
        description="Git-aware Meltano projects over the GitHub and GitLab APIs.",
    )
    app.state.service = service_state
    app.state.plugin_envs = plugin_env_store(service_state.settings)
    # Inside the gate: an unknown caller's /v1 form is refused 401 before it is read.
    app.add_middleware(
        BodyLimit,
        form_limit=lambda: service_state.settings.form_max_bytes,
        webhook_limit=lambda: service_state.settings.webhook_max_bytes,
        body_limit=lambda: service_state.settings.body_max_bytes,
    )
    app.state.projects_watch = watch = ProjectsWatch(service_state)
    app.add_middleware(
        BearerGate,
        projects=watch,
        from_cookie=lambda pair: web.bearer_for_cookie(service_state, pair),
    )
    app.add_exception_handler(StarletteHTTPException, problems.handle_http)
    app.add_exception_handler(problems.Problem, problems.handle_problem)
    app.add_exception_handler(ProviderError, problems.handle_domain)
    app.add_exception_handler(ReadOnlyBranch, problems.handle_domain)
    app.add_exception_handler(RequestValidationError, problems.handle_validation)
    modules = (
        health,
        projects,
        archive,
        plugin_envs,
        commits,
        meltano,
        collab,
        webhooks,
        deliveries,
    )
    for module in modules:
        app.include_router(module.router)
    app.include_router(check_routes.router)
    web.mount(app)
    app.state.error_page = web.error_page
    return app
