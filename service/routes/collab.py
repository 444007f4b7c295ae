"""Promotions (PR/MR), runner workspaces and the event stream."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from providers.names import check_branch_name
from service.deps import Reader, StateDep, Writer
from service.storage import workspaces

router = APIRouter(prefix="/v1/projects/{project}", tags=["collaboration"])


class PromotionIn(BaseModel):
    source: str | None = None
    target: str | None = None
    title: str | None = None
    body: str = ""


class PromotionOut(BaseModel):
    number: int
    url: str
    source: str
    target: str
    created: bool


class WorkspaceIn(BaseModel):
    branch: str
    base_sha: str = Field(pattern=r"^[0-9a-f]{40}$")
    dirty: list[str] = Field(default_factory=list, max_length=10000)


class WorkspaceOut(WorkspaceIn):
    id: str
    updated_at: float


@router.post("/promotions", status_code=201)
def promote(ctx: Writer, body: PromotionIn) -> PromotionOut:
    """Open or reuse a PR/MR (default: working branch into the default branch)."""
    source = check_branch_name(body.source or ctx.policy.working)
    target = check_branch_name(body.target or ctx.forge.repository().default_branch)
    request = ctx.forge.open_change_request(
        source, target, body.title or f"Promote {source} to {target}", body.body
    )
    return PromotionOut(
        number=request.number,
        url=request.url,
        source=source,
        target=target,
        created=request.created,
    )


@router.put("/workspaces/{workspace_id}")
def report_workspace(
    ctx: Writer, state: StateDep, workspace_id: str, body: WorkspaceIn
) -> WorkspaceOut:
    """A runner reports its branch, base and uncommitted files."""
    now = time.time()
    values = {
        "branch": body.branch,
        "base_sha": body.base_sha,
        "dirty": json.dumps(body.dirty),
        "updated_at": now,
    }
    key = sa.and_(workspaces.c.project == ctx.config.name, workspaces.c.id == workspace_id)
    with state.engine.begin() as connection:
        if connection.execute(workspaces.update().where(key).values(**values)).rowcount == 0:
            connection.execute(
                workspaces.insert().values(project=ctx.config.name, id=workspace_id, **values)
            )
    return WorkspaceOut(
        id=workspace_id,
        updated_at=now,
        branch=body.branch,
        base_sha=body.base_sha,
        dirty=body.dirty,
    )


@router.get("/workspaces")
def list_workspaces(ctx: Reader, state: StateDep, dirty: bool | None = None) -> list[WorkspaceOut]:
    """Workspaces, optionally only the dirty ones (the "uncommitted changes" prompt)."""
    with state.engine.connect() as connection:
        rows = connection.execute(
            sa.select(workspaces).where(workspaces.c.project == ctx.config.name)
        ).all()
    out = [
        WorkspaceOut(
            id=r.id,
            branch=r.branch,
            base_sha=r.base_sha,
            dirty=json.loads(r.dirty),
            updated_at=r.updated_at,
        )
        for r in rows
    ]
    return [w for w in out if dirty is None or bool(w.dirty) == dirty]


@router.get("/events", response_class=StreamingResponse)
def events(ctx: Reader, state: StateDep) -> StreamingResponse:
    """Server-Sent Events: `branch_moved` and `redeploy_requested`."""
    return StreamingResponse(state.events.stream(ctx.config.name), media_type="text/event-stream")
