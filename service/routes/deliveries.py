"""Redeploy deliveries: their state, and another chance for a dead letter."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from service import operations
from service.deps import Admin, Paged, Reader
from service.problems import API_ERRORS, Problem

router = APIRouter(prefix="/v1/projects/{project}", tags=["deliveries"], responses=API_ERRORS)


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read from a `deliveries` row

    id: int
    target: str
    status: str
    attempts: int
    idempotency_key: str
    last_error: str | None
    created_at: float
    delivered_at: float | None


@router.get("/deliveries")
def list_deliveries(ctx: Reader, paged: Paged, status: str | None = None) -> list[DeliveryOut]:
    """Newest first."""
    rows = operations.list_deliveries(ctx.state, ctx.config.name, status)
    return [DeliveryOut.model_validate(r) for r in paged.of(rows)]


@router.post("/deliveries/{delivery_id}/retry", status_code=202)
def retry(ctx: Admin, delivery_id: operations.DeliveryId) -> dict[str, str]:
    """Give a dead letter another round of attempts (admins only)."""
    if not operations.retry_delivery(ctx.state, ctx.config.name, delivery_id):
        raise Problem(404, "Not found", f"No dead delivery {delivery_id} in this project")
    return {"status": "pending"}
