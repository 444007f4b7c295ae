"""Promotions (PR/MR), runner workspaces and the event stream."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from service import operations
from service.auth import still_authorized
from service.deps import Paged, Reader, StateDep, Writer
from service.problems import API_ERRORS, documented
from service.routes.checks import FindingOut
from service.settings import Role
from service.storage import BRANCH_MAX, WORKSPACE_ID_MAX

router = APIRouter(prefix="/v1/projects/{project}", tags=["collaboration"], responses=API_ERRORS)


class PromotionIn(BaseModel):
    source: str | None = None
    target: str | None = None
    title: str | None = None
    body: str = ""
    override_check: bool = Field(
        default=False,
        description="Promote although the source branch's check adds errors to the target's "
        "(admin tokens only: 403 for others)",
    )


class PromotionCheckOut(BaseModel):
    """The source branch's check, judged against the target's."""

    sha: str = Field(description="The source commit that was checked")
    target_sha: str | None = Field(description="The target commit, when it was checked")
    ok: bool
    allowed: bool = Field(description="False when it adds errors the target does not have")
    errors: list[FindingOut]
    warnings: list[FindingOut]
    new_errors: list[FindingOut]
    base_errors: int | None = Field(description="The target's errors, when it was checked")


class PromotionOut(BaseModel):
    number: int
    url: str
    source: str
    target: str
    created: bool
    merged: bool = False
    detail: str = ""
    check: PromotionCheckOut | None = Field(
        default=None, description="None when the source branch did not exist"
    )
    overridden: bool = Field(default=False, description="Promoted although the check failed")


WorkspaceId = Annotated[str, Path(min_length=1, max_length=WORKSPACE_ID_MAX)]


class WorkspaceIn(BaseModel):
    branch: str = Field(min_length=1, max_length=BRANCH_MAX)
    base_sha: str = Field(pattern=r"^[0-9a-f]{40}$")
    dirty: list[str] = Field(default_factory=list, max_length=10000)
    diff: str = Field(default="", max_length=256 * 1024, description="The runner's patch")


class WorkspaceOut(WorkspaceIn):
    model_config = ConfigDict(from_attributes=True)  # read from a `WorkspaceView`

    id: str
    updated_at: float
    stale: bool = False


@router.post("/promotions", status_code=201, responses=documented(422))
def promote(ctx: Writer, body: PromotionIn) -> PromotionOut:
    """Open or reuse a PR/MR (default: working branch into the default branch). The source
    branch is checked first: 422 "Check failed" (with `check`) when it adds errors to the
    target's check, unless an admin token says `override_check`."""
    done = operations.promote(
        ctx, body.source, body.target, body.title, body.body, override_check=body.override_check
    )
    return PromotionOut(
        **dataclasses.asdict(done.request),
        check=PromotionCheckOut(**done.check.as_dict()) if done.check else None,
        overridden=done.overridden,
    )


@router.put("/workspaces/{workspace_id}")
def report_workspace(ctx: Writer, workspace_id: WorkspaceId, body: WorkspaceIn) -> WorkspaceOut:
    """A runner reports its branch, base, uncommitted files and their patch."""
    view = operations.report_workspace(
        ctx, workspace_id, body.branch, body.base_sha, body.dirty, body.diff
    )
    return _out(view)


@router.get("/workspaces")
def list_workspaces(ctx: Reader, paged: Paged, dirty: bool | None = None) -> list[WorkspaceOut]:
    """Workspaces, dirty ones first (the "uncommitted changes" prompt)."""
    views = [
        w
        for w in operations.list_workspaces(ctx.state, ctx.config.name)
        if dirty is None or bool(w.dirty) == dirty
    ]
    return [_out(w) for w in paged.of(views)]


def _out(view: operations.WorkspaceView) -> WorkspaceOut:
    return WorkspaceOut.model_validate(view)


@router.get("/events", response_class=StreamingResponse)
def events(ctx: Reader, state: StateDep, request: Request) -> StreamingResponse:
    """Server-Sent Events: `branch_moved` and `redeploy_requested`; the stream ends when
    its token is revoked."""
    allowed = still_authorized(
        request.app.state.projects_watch, ctx.token, ctx.config.name, Role.READ
    )
    return StreamingResponse(
        state.events.stream(ctx.config.name, allowed=allowed), media_type="text/event-stream"
    )
