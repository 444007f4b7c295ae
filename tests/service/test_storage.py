"""Migrations upgrade a real database in place, keeping its rows."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from service.storage import MIGRATIONS, make_engine, migrate


def test_upgrade_in_place_from_the_first_schema(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(
            sa.text(
                "INSERT INTO webhook_events (id, project, event, received_at) "
                "VALUES ('github:1', 'w', 'push', 42.0)"
            )
        )
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT id, processed_at, push, body_digest FROM webhook_events")
        ).one()
        version = connection.execute(
            sa.text("SELECT version_num FROM alembic_version")
        ).scalar_one()
    assert tuple(row) == ("github:1", 42.0, None, None), "old pushes count as processed"
    assert version == ScriptDirectory.from_config(config).get_current_head() == "0006"
    engine.dispose()
