"""Storage: SQLAlchemy tables (SQLite by default, PostgreSQL for replicas) and migrations.

The schema lives in Alembic migrations (`service/migrations`), applied in place at start-up,
so a real installation upgrades without losing its outbox.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

metadata = sa.MetaData()

WORKSPACE_ID_MAX = 128
"""Characters in a runner's workspace id: every route refuses a longer one (422) before
the store, where PostgreSQL would refuse it as a server error."""
BRANCH_MAX = 255
"""Characters in a stored branch name (git and the forges allow no longer one either)."""

webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True, doc="provider:delivery id, for dedupe"),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("push", sa.Text, doc="the normalized push, JSON, until processed"),
    sa.Column("processed_at", sa.Float, doc="when its redeploys were enqueued"),
    sa.Column("body_digest", sa.String(64), doc="sha256 of the signed body, against replays"),
    sa.Index("ix_webhook_events_digest", "project", "body_digest"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("target", sa.String(128), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", sa.Float),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float),
)

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("project", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(WORKSPACE_ID_MAX), primary_key=True),
    sa.Column("branch", sa.String(BRANCH_MAX), nullable=False),
    sa.Column("base_sha", sa.String(40), nullable=False),
    sa.Column("dirty", sa.Text, nullable=False, doc="JSON list of uncommitted paths"),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("diff", sa.Text, doc="the runner's patch of its uncommitted changes (capped)"),
)

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id_sha256", sa.String(64), primary_key=True, doc="sha256 of the cookie value"),
    sa.Column("token_name", sa.String(128), nullable=False, doc="the API token signed in"),
    sa.Column("token_sha256", sa.String(64), doc="sha256 of that token's secret"),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> sa.Engine:
    """An engine; SQLite gets WAL and a busy timeout so several processes can share it."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection: object, _record: object) -> None:
            cursor = connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema up to date (alembic upgrade head), in place, quietly."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
