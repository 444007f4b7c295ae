"""`GET /meltano`: the parsed project, for dashboards."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.deps import Reader
from service.meltano_summary import summarize
from service.routes.projects import resolve

router = APIRouter(prefix="/v1/projects/{project}", tags=["meltano"])


@router.get("/meltano")
def meltano(ctx: Reader, ref: str | None = None, project_path: str = "") -> dict[str, Any]:
    """Plugins, schedules, jobs and environments from meltano.yml and its include files."""
    return summarize(ctx.forge, resolve(ctx, ref), project_path)
