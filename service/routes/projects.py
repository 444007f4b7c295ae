"""Project summary, branches, tree and files."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Response
from pydantic import BaseModel

from providers.contract import Branch, TreeEntry
from providers.errors import NotFound
from providers.names import check_repo_path, is_sha
from service.deps import ProjectContext, Reader, Writer
from service.settings import Role

router = APIRouter(prefix="/v1/projects/{project}", tags=["projects"])


class ProjectSummary(BaseModel):
    name: str
    default_branch: str
    web_url: str
    working_branch: str
    protected_branches: list[str]


class BranchOut(BaseModel):
    name: str
    head: str
    protected: bool
    read_only: bool
    can_push: bool | None = None


class NewBranch(BaseModel):
    name: str
    from_ref: str | None = None


class TreeEntryOut(BaseModel):
    path: str
    mode: str
    sha: str
    size: int


def resolve(ctx: ProjectContext, ref: str | None) -> str:
    """A SHA for `ref` (a SHA, a branch, or the working branch when omitted, else the
    default branch while the working branch does not exist yet). Branch names go through
    the service's short-lived head cache."""
    if ref and is_sha(ref):
        return ref
    name = ref or ctx.policy.working
    try:
        return ctx.state.heads.head(ctx.config.name, ctx.forge, name)
    except NotFound:
        if ref:
            raise
    default = ctx.forge.repository().default_branch
    return ctx.state.heads.head(ctx.config.name, ctx.forge, default)


def _branch(ctx: ProjectContext, b: Branch) -> BranchOut:
    may_write = ctx.token is None or ctx.token.role >= Role.WRITE
    read_only = ctx.policy.is_read_only(b.name)
    return BranchOut(
        name=b.name,
        head=b.head,
        protected=b.protected or read_only,
        read_only=read_only or b.protected,
        can_push=False if not may_write else b.can_push,
    )


@router.get("")
def summary(ctx: Reader) -> ProjectSummary:
    """The project's repository and branch model."""
    info = ctx.forge.repository()
    return ProjectSummary(
        name=ctx.config.name,
        default_branch=info.default_branch,
        web_url=info.web_url,
        working_branch=ctx.policy.working,
        protected_branches=list(ctx.policy.protected),
    )


@router.get("/branches")
def list_branches(ctx: Reader) -> list[BranchOut]:
    """Every branch with head and protection."""
    return [_branch(ctx, b) for b in ctx.forge.branches()]


@router.get("/branches/{name:path}")
def get_branch(ctx: Reader, name: str) -> BranchOut:
    """One branch."""
    return _branch(ctx, ctx.forge.branch(name))


@router.get("/compare")
def compare(ctx: Reader, base: str, head: str) -> list[str]:
    """Paths that differ between two refs."""
    return sorted(ctx.forge.changed_paths(resolve(ctx, base), resolve(ctx, head)))


@router.post("/branches", status_code=201)
def create_branch(ctx: Writer, body: NewBranch) -> BranchOut:
    """Create a branch (from `from_ref`, else by the branch model); names that git cannot
    hold beside existing branches are refused."""
    if body.from_ref:
        branch = ctx.forge.create_branch(body.name, resolve(ctx, body.from_ref))
    else:
        branch, _ = ctx.policy.ensure(ctx.forge, body.name)
    return _branch(ctx, branch)


@router.get("/tree")
def tree(ctx: Reader, ref: str | None = None) -> list[TreeEntryOut]:
    """Every file at a ref."""
    return [
        TreeEntryOut(path=e.path, mode=e.mode.git, sha=e.sha, size=e.size) for e in _tree(ctx, ref)
    ]


def _tree(ctx: ProjectContext, ref: str | None) -> list[TreeEntry]:
    return ctx.forge.list_tree(resolve(ctx, ref))


@router.get("/files/{path:path}", response_class=Response)
def read_file(ctx: Reader, path: str, ref: str | None = None) -> Response:
    """One file's bytes at a ref (ETag: the commit SHA and path)."""
    check_repo_path(path)
    sha = resolve(ctx, ref)
    data = ctx.forge.read_file(sha, path)
    etag = base64.urlsafe_b64encode(f"{sha}:{path}".encode()).decode().rstrip("=")
    return Response(data, media_type="application/octet-stream", headers={"ETag": f'"{etag}"'})
