"""`GET /deliveries`: redeploy deliveries and their state."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel

from service.deps import Reader, StateDep
from service.storage import deliveries

router = APIRouter(prefix="/v1/projects/{project}", tags=["deliveries"])


class DeliveryOut(BaseModel):
    id: int
    target: str
    status: str
    attempts: int
    idempotency_key: str
    last_error: str | None
    created_at: float
    delivered_at: float | None


@router.get("/deliveries")
def list_deliveries(
    ctx: Reader, state: StateDep, status: str | None = None, limit: int = 100
) -> list[DeliveryOut]:
    """Newest first."""
    query = sa.select(deliveries).where(deliveries.c.project == ctx.config.name)
    if status:
        query = query.where(deliveries.c.status == status)
    with state.engine.connect() as connection:
        rows = connection.execute(
            query.order_by(deliveries.c.id.desc()).limit(max(1, min(limit, 1000)))
        ).all()
    return [
        DeliveryOut(
            id=r.id,
            target=r.target,
            status=r.status,
            attempts=r.attempts,
            idempotency_key=r.idempotency_key,
            last_error=r.last_error,
            created_at=r.created_at,
            delivered_at=r.delivered_at,
        )
        for r in rows
    ]
