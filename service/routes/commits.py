"""`POST /commits`: a change set on a base SHA, under the branch policy."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter
from pydantic import BaseModel, Field

from providers.contract import Author, FileChange, FileMode
from service.deps import Writer
from service.problems import Problem

router = APIRouter(prefix="/v1/projects/{project}", tags=["commits"])


class ChangeIn(BaseModel):
    path: str
    content_base64: str | None = Field(
        default=None, description="New contents; null deletes the file"
    )
    mode: str = "100644"
    base_mode: str | None = None


class CommitIn(BaseModel):
    branch: str
    base_sha: str | None = None
    message: str = Field(min_length=1)
    changes: list[ChangeIn] = Field(min_length=1, max_length=5000)
    author_name: str | None = None
    author_email: str | None = None


class CommitOut(BaseModel):
    sha: str
    parent: str | None
    rebased: bool


def _change(change: ChangeIn) -> FileChange:
    try:
        mode = FileMode.parse(change.mode)
        base_mode = FileMode.parse(change.base_mode) if change.base_mode else None
        content = (
            None
            if change.content_base64 is None
            else base64.b64decode(change.content_base64, validate=True)
        )
    except (ValueError, binascii.Error) as exc:
        raise Problem(422, "Invalid change", f"{change.path}: bad mode or base64 content") from exc
    if content is None:
        return FileChange.delete(change.path, base_mode or FileMode.REGULAR)
    return FileChange.put(change.path, content, mode, base_mode)


@router.post("/commits", status_code=201)
def commit(ctx: Writer, body: CommitIn) -> CommitOut:
    """Commit atomically: 403 on a read-only branch, 409 with paths on a conflict."""
    ctx.policy.check_writable(body.branch)
    author = (
        Author(body.author_name, body.author_email)
        if body.author_name and body.author_email
        else None
    )
    result = ctx.forge.commit(
        body.branch, body.base_sha, [_change(c) for c in body.changes], body.message, author
    )
    return CommitOut(sha=result.sha, parent=result.parent, rebased=result.rebased)
