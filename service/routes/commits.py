"""Commits: make one (a change set under the branch policy), list a branch's, read one."""

from __future__ import annotations

import base64
import binascii
import dataclasses

from fastapi import APIRouter
from pydantic import BaseModel, Field

from providers.contract import Author, CommitMeta, FileChange, FileMode
from service import operations
from service.deps import Paged, Reader, Writer
from service.problems import API_ERRORS, Problem, documented

router = APIRouter(prefix="/v1/projects/{project}", tags=["commits"], responses=API_ERRORS)


class ChangeIn(BaseModel):
    path: str
    content_base64: str | None = Field(
        default=None, description="New contents; null deletes the file"
    )
    mode: str = "100644"
    base_mode: str | None = None


class CommitIn(BaseModel):
    branch: str
    base_sha: str | None = Field(
        default=None,
        description="The commit (or branch) the change was made on; without it, a plain "
        "commit on the branch's head. A missing branch starts here, else at the default "
        "branch.",
    )
    message: str = Field(min_length=1)
    changes: list[ChangeIn] = Field(min_length=1, max_length=5000)
    author_name: str | None = None
    author_email: str | None = None


class CommitOut(BaseModel):
    sha: str
    parent: str | None
    rebased: bool


class PersonOut(BaseModel):
    name: str
    email: str
    time: int
    offset: int | None = None


class CommitMetaOut(BaseModel):
    sha: str
    parents: list[str]
    author: PersonOut
    committer: PersonOut
    message: str
    tree: str | None = Field(default=None, description="The root tree's id, where the forge has it")
    signature: str | None = Field(
        default=None, description="The `gpgsig` header of a signed commit, when the forge gives it"
    )
    raw_base64: str | None = None


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


def _meta(meta: CommitMeta) -> CommitMetaOut:
    return CommitMetaOut(
        sha=meta.sha,
        parents=list(meta.parents),
        author=PersonOut(**dataclasses.asdict(meta.author)),
        committer=PersonOut(**dataclasses.asdict(meta.committer)),
        message=meta.message,
        tree=meta.tree,
        signature=meta.signature,
        raw_base64=base64.b64encode(meta.raw).decode() if meta.raw else None,
    )


@router.post("/commits", status_code=201, responses=documented(409))
def commit(ctx: Writer, body: CommitIn) -> CommitOut:
    """Commit atomically: 403 on a read-only branch, 409 with paths on a conflict, 422 for
    what a pull would refuse."""
    author = (
        Author(body.author_name, body.author_email)
        if body.author_name and body.author_email
        else None
    )
    changes = [_change(c) for c in body.changes]
    result = operations.commit(ctx, body.branch, body.base_sha, changes, body.message, author)
    return CommitOut(sha=result.sha, parent=result.parent, rebased=result.rebased)


@router.get("/commits")
def list_commits(ctx: Reader, paged: Paged, ref: str | None = None) -> list[CommitMetaOut]:
    """A branch's history, newest first (the working branch when `ref` is omitted)."""
    metas = operations.history(ctx, ref, paged.through)
    return [_meta(m) for m in paged.of(metas)]


@router.get("/commits/{ref}")
def commit_meta(ctx: Reader, ref: str) -> CommitMetaOut:
    """One commit: author, committer, parents and message (and its object, where known)."""
    return _meta(operations.commit_meta(ctx, operations.resolve(ctx, ref)))
