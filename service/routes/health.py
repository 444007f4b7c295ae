"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import StateDep
from service.problems import PROBLEM, PROBLEM_SCHEMA, Problem

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "The database does not answer",
        "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}},
    }
}


@router.get("/readyz", responses=NOT_READY)
def readyz(state: StateDep) -> dict[str, str]:
    """The database answers."""
    try:
        with state.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        raise Problem(503, "Not ready", "The database does not answer") from exc
    return {"status": "ready"}


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
