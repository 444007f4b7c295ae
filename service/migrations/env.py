"""Alembic environment: runs on the connection the service hands it."""

from __future__ import annotations

from alembic import context

from service.storage import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
