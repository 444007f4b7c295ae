"""`GET /meltano`: the parsed project, for dashboards."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service import operations
from service.deps import Reader
from service.problems import API_ERRORS

router = APIRouter(prefix="/v1/projects/{project}", tags=["meltano"], responses=API_ERRORS)


@router.get("/meltano")
def meltano(ctx: Reader, ref: str | None = None, project_path: str | None = None) -> dict[str, Any]:
    """Plugins, schedules, jobs and environments from meltano.yml and its include files
    (in the project's folder of a monorepo unless `project_path` says otherwise)."""
    return operations.meltano(ctx, ref, project_path)
