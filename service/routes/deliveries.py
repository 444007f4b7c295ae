"""Redeploy deliveries: their state, and another chance for a dead letter."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from service import operations
from service.deps import Admin, Reader
from service.paging import Cursor, Limit, page
from service.problems import API_ERRORS, Problem

router = APIRouter(prefix="/v1/projects/{project}", tags=["deliveries"], responses=API_ERRORS)


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
    ctx: Reader,
    request: Request,
    response: Response,
    status: str | None = None,
    limit: int = Limit,
    cursor: str | None = Cursor,
) -> list[DeliveryOut]:
    """Newest first."""
    rows = operations.list_deliveries(ctx.state, ctx.config.name, status)
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
        for r in page(rows, request, response, limit, cursor)
    ]


@router.post("/deliveries/{delivery_id}/retry", status_code=202)
def retry(ctx: Admin, delivery_id: operations.DeliveryId) -> dict[str, str]:
    """Give a dead letter another round of attempts (admins only)."""
    if not operations.retry_delivery(ctx.state, ctx.config.name, delivery_id):
        raise Problem(404, "Not found", f"No dead delivery {delivery_id} in this project")
    return {"status": "pending"}
