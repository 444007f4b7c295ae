"""The redeploy outbox: durable deliveries with retries, back-off and a dead-letter state.

A worker claims due rows under a row lock (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite
serializes writers) and leases them, so replicas never deliver one event at the same time;
a lease left by a killed process expires and the delivery is retried with the same
idempotency key. Each POST is signed: `X-Meltano-Forge-Signature: sha256=<hmac>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from service.metrics import DELIVERIES
from service.polling import PollingWorker
from service.settings import DeployTarget
from service.storage import deliveries

log = logging.getLogger(__name__)

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


@dataclass(frozen=True)
class OutboxPolicy:
    """Retry schedule."""

    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 600.0
    lease_seconds: float = 60.0
    timeout: float = 10.0


def enqueue(
    connection: sa.Connection,
    project: str,
    event_id: str,
    targets: Iterable[DeployTarget],
    payload: dict[str, Any],
) -> int:
    """Add one delivery per target in the caller's transaction; duplicates are skipped."""
    now = time.time()
    added = 0
    for target in targets:
        key = hashlib.sha256(f"{project}:{target.name}:{event_id}".encode()).hexdigest()[:40]
        exists = connection.execute(
            sa.select(deliveries.c.id).where(deliveries.c.idempotency_key == key)
        ).first()
        if exists:
            continue
        connection.execute(
            deliveries.insert().values(
                project=project,
                target=target.name,
                url=target.url,
                idempotency_key=key,
                payload=json.dumps({**payload, "target": target.name}, sort_keys=True),
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        added += 1
    return added


def sign(secret: str, body: bytes) -> str:
    """The signature header value for a delivery body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class OutboxWorker(PollingWorker):
    """Claims and delivers due rows; `run_once` is one pass, `start` loops in a thread."""

    def __init__(
        self,
        engine: sa.Engine,
        secrets: dict[tuple[str, str], str],
        policy: OutboxPolicy | None = None,
        interval: float = 1.0,
        before_pass: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(interval, "outbox")
        self.engine = engine
        self.secrets = secrets
        self.policy = policy or OutboxPolicy()
        self.before_pass = before_pass
        self.owner = uuid.uuid4().hex[:16]
        self._http = httpx.Client(timeout=self.policy.timeout)

    def claim(self, limit: int = 10) -> list[sa.Row[Any]]:
        """Lease up to `limit` due deliveries to this worker."""
        now = time.time()
        due = sa.and_(
            deliveries.c.status == PENDING,
            deliveries.c.next_attempt_at <= now,
            sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
        )
        with self.engine.begin() as connection:
            rows = connection.execute(
                sa.select(deliveries)
                .where(due)
                .order_by(deliveries.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return []
            ids = [r.id for r in rows]
            connection.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(ids), due)
                .values(lease_owner=self.owner, lease_until=now + self.policy.lease_seconds)
            )
            mine = connection.execute(
                sa.select(deliveries).where(
                    deliveries.c.id.in_(ids), deliveries.c.lease_owner == self.owner
                )
            ).all()
        return list(mine)

    def deliver(self, row: sa.Row[Any]) -> None:
        """POST one delivery and record the outcome."""
        body = row.payload.encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": row.idempotency_key,
            "User-Agent": "meltano-forge-redeploy",
        }
        secret = self.secrets.get((row.project, row.target))
        if secret:
            headers["X-Meltano-Forge-Signature"] = sign(secret, body)
        error: str | None = None
        try:
            response = self._http.post(row.url, content=body, headers=headers)
            if response.status_code >= 300:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        self._record(row, error)

    def _record(self, row: sa.Row[Any], error: str | None) -> None:
        now = time.time()
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "lease_owner": None, "lease_until": None}
        DELIVERIES.labels("ok" if error is None else "failed").inc()
        if error is None:
            values.update(status=DELIVERED, delivered_at=now, last_error=None)
        elif attempts >= self.policy.max_attempts:
            values.update(status=DEAD, last_error=error)
            log.warning(
                "delivery %s to %s is dead after %d attempts: %s",
                row.id,
                row.target,
                attempts,
                error,
            )
        else:
            delay = min(self.policy.max_delay, self.policy.base_delay * 2 ** (attempts - 1))
            jitter = 0.5 + random.random() / 2  # noqa: S311 - spreading retries, not a secret
            values.update(next_attempt_at=now + delay * jitter, last_error=error)
        with self.engine.begin() as connection:
            connection.execute(
                deliveries.update()
                .where(deliveries.c.id == row.id, deliveries.c.lease_owner == self.owner)
                .values(**values)
            )

    def run_once(self) -> int:
        """Claim and deliver what is due; returns how many were attempted."""
        if self.before_pass is not None:
            self.before_pass()
        rows = self.claim()
        for row in rows:
            self.deliver(row)
        return len(rows)

    def stop(self) -> None:
        """Stop the loop and close connections."""
        super().stop()
        self._http.close()
