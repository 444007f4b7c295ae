"""Web sessions (a signed-in API token, its CSRF token and expiry) and the patch a runner
reports with its uncommitted files, for the dashboard."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    """Add the sessions table and the workspaces' diff."""
    op.create_table(
        "web_sessions",
        sa.Column("id_sha256", sa.String(64), primary_key=True),
        sa.Column("token_name", sa.String(128), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("diff", sa.Text, nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("diff")
    op.drop_table("web_sessions")
