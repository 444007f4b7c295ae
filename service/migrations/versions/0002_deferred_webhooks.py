"""Keep each accepted push so its redeploys can be resolved after answering 202."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    """Add the push and when it was processed; rows from 0001 were processed on arrival."""
    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(sa.Column("push", sa.Text, nullable=True))
        batch.add_column(sa.Column("processed_at", sa.Float, nullable=True))
    op.execute("UPDATE webhook_events SET processed_at = received_at")


def downgrade() -> None:
    """Drop the columns."""
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_column("processed_at")
        batch.drop_column("push")
