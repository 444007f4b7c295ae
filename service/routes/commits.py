"""`POST /commits`: a change set on a base SHA, under the branch policy."""

from __future__ import annotations

import base64
import binascii
import dataclasses

from fastapi import APIRouter
from pydantic import BaseModel, Field

from providers import changeset
from providers.contract import Author, FileChange, FileMode
from providers.errors import NotFound
from providers.safety import check_links
from service.deps import Reader, Writer
from service.problems import Problem
from service.routes.projects import resolve

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
    """Commit atomically: 403 on a read-only branch, 409 with paths on a conflict, 422 for
    what a pull would refuse. A missing branch starts at `base_sha` (a SHA or a branch),
    else at the default branch."""
    ctx.policy.check_writable(body.branch)
    author = (
        Author(body.author_name, body.author_email)
        if body.author_name and body.author_email
        else None
    )
    base = resolve(ctx, body.base_sha) if body.base_sha else None
    changes = [_change(c) for c in body.changes]
    changeset.validate(changes, ctx.state.settings.limits)
    if any(c.mode is FileMode.SYMLINK for c in changes if c.content is not None):
        start = base or _head(ctx, body.branch)
        check_links(changeset.links_after(ctx.forge, start, changes))
    with ctx.state.commit_lock(ctx.config.name, body.branch):
        result = ctx.forge.commit(body.branch, base, changes, body.message, author)
    ctx.state.heads.moved(ctx.config.name, body.branch, result.sha)
    return CommitOut(sha=result.sha, parent=result.parent, rebased=result.rebased)


def _head(ctx: Writer, branch: str) -> str | None:
    try:
        return ctx.forge.branch(branch).head
    except NotFound:
        return None


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
    tree: str | None = None
    signature: str | None = None
    raw_base64: str | None = None


@router.get("/commits/{ref}")
def commit_meta(ctx: Reader, ref: str) -> CommitMetaOut:
    """One commit: author, committer, parents and message (and its object, where known)."""
    meta = ctx.forge.commit_meta(resolve(ctx, ref))
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
