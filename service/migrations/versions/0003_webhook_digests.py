"""Remember a digest of each signed webhook body, so a replayed body is refused even when
it comes with a new delivery id (GitHub does not sign X-GitHub-Delivery)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    """Add the body digest, indexed with the project for the replay check."""
    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(sa.Column("body_digest", sa.String(64), nullable=True))
        batch.create_index("ix_webhook_events_digest", ["project", "body_digest"])


def downgrade() -> None:
    """Drop the digest."""
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_index("ix_webhook_events_digest")
        batch.drop_column("body_digest")
