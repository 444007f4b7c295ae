"""A budget of content-creating forge requests per token, shared by every replica.

GitHub's secondary rate limits allow at most 80 content-creating requests a minute (a
commit status, a comment and its edits all count), per token, however many processes
send them. Each request is written down in the database before it is sent, in a
transaction that first takes the token's bucket row (an UPDATE: a row lock on
PostgreSQL, the write lock on SQLite), so two replicas never both take the last slot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sqlalchemy as sa

from service.storage import metadata

forge_write_buckets = sa.Table(
    "forge_write_buckets",
    metadata,
    sa.Column("bucket", sa.String(64), primary_key=True, doc="sha256 of the API and token"),
    sa.Column("touched_at", sa.Float, nullable=False),
)

forge_writes = sa.Table(
    "forge_writes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("bucket", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_forge_writes_bucket", "bucket", "at"),
)


@dataclass(frozen=True)
class WriteBudget:
    """How many content-creating requests a token may send in a sliding window."""

    per_window: int = 80
    window: float = 60.0


def bucket_of(api_url: str, token: str) -> str:
    """The budget's key for one token on one forge: a digest, never the token."""
    return hashlib.sha256(f"{api_url}\0{token}".encode()).hexdigest()


def reserve(
    engine: sa.Engine, bucket: str, count: int, budget: WriteBudget, now: float
) -> list[int] | float:
    """Take `count` slots of the bucket's window at once: their ids, or the seconds until
    enough are free (nothing is taken then)."""
    _ensure_bucket(engine, bucket, now)
    with engine.begin() as connection:
        connection.execute(
            forge_write_buckets.update()
            .where(forge_write_buckets.c.bucket == bucket)
            .values(touched_at=now)
        )
        start = now - budget.window
        connection.execute(
            forge_writes.delete().where(forge_writes.c.bucket == bucket, forge_writes.c.at <= start)
        )
        recent = [
            float(r.at)
            for r in connection.execute(
                sa.select(forge_writes.c.at)
                .where(forge_writes.c.bucket == bucket)
                .order_by(forge_writes.c.at)
            )
        ]
        free = budget.per_window - len(recent)
        if free < count:
            needed = count - max(free, 0)
            # The slots free up as the oldest writes leave the window.
            frees_at = recent[min(needed, len(recent)) - 1] + budget.window
            return max(frees_at - now, 0.001)
        ids = []
        for _ in range(count):
            made = connection.execute(forge_writes.insert().values(bucket=bucket, at=now))
            ids.append(int((made.inserted_primary_key or (0,))[0]))
        return ids


def _ensure_bucket(engine: sa.Engine, bucket: str, now: float) -> None:
    with engine.connect() as connection:
        found = connection.execute(
            sa.select(forge_write_buckets.c.bucket).where(forge_write_buckets.c.bucket == bucket)
        ).first()
    if found is None:
        try:
            with engine.begin() as connection:
                connection.execute(
                    forge_write_buckets.insert().values(bucket=bucket, touched_at=now)
                )
        except sa.exc.IntegrityError:
            pass  # another replica made it first


def release(engine: sa.Engine, ids: list[int]) -> None:
    """Give back slots that were reserved but not used (a job that found its head moved)."""
    if ids:
        with engine.begin() as connection:
            connection.execute(forge_writes.delete().where(forge_writes.c.id.in_(ids)))


def sent(engine: sa.Engine, bucket: str, since: float) -> int:
    """How many writes the bucket recorded since `since` (for tests and metrics)."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count())
                .select_from(forge_writes)
                .where(forge_writes.c.bucket == bucket, forge_writes.c.at > since)
            ).scalar_one()
        )
