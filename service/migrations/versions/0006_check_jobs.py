"""Checks of pull/merge requests and pushes: the jobs, their results, the one comment per
PR/MR, and the budget of content-creating forge requests per token."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    """Create the four tables."""
    op.create_table(
        "check_jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("forge", sa.String(16), nullable=False),
        sa.Column("number", sa.Integer),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("target", sa.String(255)),
        sa.Column("base_sha", sa.String(40)),
        sa.Column("head_sha", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", sa.Float),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.UniqueConstraint("project", "subject", "head_sha", name="uq_check_jobs_head"),
    )
    op.create_index("ix_check_jobs_due", "check_jobs", ["status", "next_attempt_at"])
    op.create_table(
        "check_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("sha", sa.String(40), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("number", sa.Integer),
        sa.Column("target", sa.String(255)),
        sa.Column("base_sha", sa.String(40)),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("warnings", sa.Integer, nullable=False),
        sa.Column("findings", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("checked_at", sa.Float, nullable=False),
    )
    op.create_index("ix_check_results_sha", "check_results", ["project", "sha"])
    op.create_index("ix_check_results_branch", "check_results", ["project", "branch"])
    op.create_table(
        "check_comments",
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("comment_id", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "forge_write_buckets",
        sa.Column("bucket", sa.String(64), primary_key=True),
        sa.Column("touched_at", sa.Float, nullable=False),
    )
    op.create_table(
        "forge_writes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("bucket", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_forge_writes_bucket", "forge_writes", ["bucket", "at"])


def downgrade() -> None:
    """Drop them."""
    for table in ("forge_writes", "forge_write_buckets", "check_comments", "check_results"):
        op.drop_table(table)
    op.drop_table("check_jobs")
