"""Checks the service ran on pull/merge requests and pushes: a commit's stored result, the
jobs that report them, and another chance for a dead one."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict

from service import check_jobs
from service.deps import Admin, Paged, Reader
from service.problems import API_ERRORS, Problem

router = APIRouter(prefix="/v1/projects/{project}", tags=["checks"], responses=API_ERRORS)

Sha = Annotated[str, Path(pattern=r"^[0-9a-f]{40}$", description="A full commit SHA")]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A check job's number")]


class FindingOut(BaseModel):
    rule: str
    severity: str
    file: str
    line: int | None
    column: int | None
    message: str


class CheckOut(BaseModel):
    sha: str
    branch: str
    number: int | None = None
    """The PR number or MR iid it was checked for, if any."""
    target: str | None = None
    base_sha: str | None = None
    """What the summary compares with (the target branch's head, or what a push replaced)."""
    ok: bool
    errors: list[FindingOut]
    warnings: list[FindingOut]
    summary: dict[str, Any]
    """What the change does to the project; setting values are never included."""
    checked_at: float


class CheckJobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read from a `check_jobs` row

    id: int
    subject: str
    number: int | None
    branch: str
    head_sha: str
    status: str
    """pending, done, superseded (a newer head came, or it closed) or dead."""
    attempts: int
    last_error: str | None
    created_at: float
    finished_at: float | None


def check_out(row: Any) -> CheckOut:
    """A stored result as the API shows it."""
    findings = json.loads(row.findings)
    return CheckOut(
        sha=row.sha,
        branch=row.branch,
        number=row.number,
        target=row.target,
        base_sha=row.base_sha,
        ok=row.ok,
        errors=findings["errors"],
        warnings=findings["warnings"],
        summary={k: v for k, v in json.loads(row.summary).items() if k != "base_sha"},
        checked_at=row.checked_at,
    )


@router.get("/checks/{sha}")
def get_check(ctx: Reader, sha: Sha) -> CheckOut:
    """The newest check the service stored for a commit."""
    row = check_jobs.result_at(ctx.state.engine, ctx.config.name, sha)
    if row is None:
        raise Problem(404, "Not found", f"No check of {sha[:12]} is stored in this project")
    return check_out(row)


@router.get("/check-jobs")
def list_check_jobs(ctx: Reader, paged: Paged, status: str | None = None) -> list[CheckJobOut]:
    """Check jobs, newest first; a dead one says why in `last_error`."""
    rows = check_jobs.list_jobs(ctx.state.engine, ctx.config.name, status, paged.through)
    return [CheckJobOut.model_validate(r) for r in paged.of(rows)]


@router.post("/check-jobs/{job_id}/retry", status_code=202)
def retry_check_job(ctx: Admin, job_id: JobId) -> dict[str, str]:
    """Give a dead check job another round of attempts (admins only)."""
    if not check_jobs.retry(ctx.state.engine, ctx.config.name, job_id):
        raise Problem(404, "Not found", f"No dead check job {job_id} in this project")
    return {"status": "pending"}
