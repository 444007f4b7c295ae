"""Web sessions name their API token by the sha256 of its secret, not by its name: a token
whose secret is replaced (leaked, rotated) ends every session made with it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    """Sessions made before this cannot say which secret made them: they end."""
    op.execute(sa.text("DELETE FROM web_sessions"))
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(sa.Column("token_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_column("token_sha256")
