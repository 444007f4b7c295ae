"""Projects, their branches, history, tree and files."""

from __future__ import annotations

import base64
import dataclasses

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from providers.names import check_repo_path
from service import operations
from service.deps import Paged, Reader, StateDep, Viewer, Writer
from service.operations import resolve
from service.problems import API_ERRORS

router = APIRouter(prefix="/v1/projects", tags=["projects"], responses=API_ERRORS)
__all__ = ["resolve", "router"]  # `resolve` is also the archive route's


class ProjectSummary(BaseModel):
    name: str
    provider: str
    default_branch: str
    web_url: str
    working_branch: str
    protected_branches: list[str]
    project_path: str


class ProjectListed(BaseModel):
    name: str
    provider: str
    web_url: str
    working_branch: str


class BranchOut(BaseModel):
    name: str
    head: str
    protected: bool = Field(description="Protected on the forge or by the project's configuration")
    read_only: bool
    can_push: bool | None = None
    ahead: int | None = Field(
        default=None, description="Commits it has that the default branch lacks (with `counts`)"
    )
    behind: int | None = None


class NewBranch(BaseModel):
    name: str
    from_ref: str | None = None


class TreeEntryOut(BaseModel):
    path: str
    mode: str
    sha: str
    size: int


class Counts(BaseModel):
    ahead: int
    behind: int


@router.get("")
def list_projects(viewer: Viewer, state: StateDep, paged: Paged) -> list[ProjectListed]:
    """The projects this token may see."""
    listed = [
        ProjectListed(
            name=p.name,
            provider=p.forge_config().location.kind.value,
            web_url=operations.web_url(p),
            working_branch=p.working_branch,
        )
        for p in operations.visible_projects(state, viewer)
    ]
    return paged.of(listed)


@router.get("/{project}")
def summary(ctx: Reader) -> ProjectSummary:
    """The project's repository and branch model."""
    info = ctx.forge.repository()
    return ProjectSummary(
        name=ctx.config.name,
        provider=ctx.config.forge_config().location.kind.value,
        default_branch=info.default_branch,
        web_url=operations.web_url(ctx.config),
        working_branch=ctx.policy.working,
        protected_branches=list(ctx.policy.protected),
        project_path=ctx.config.project_path,
    )


@router.get("/{project}/branches")
def list_branches(ctx: Reader, paged: Paged, counts: bool = False) -> list[BranchOut]:
    """Branches with head and protection (and, with `counts`, ahead/behind against the
    default branch)."""
    views = operations.branches(ctx, counts=counts)
    return [BranchOut(**dataclasses.asdict(v)) for v in paged.of(views)]


@router.get("/{project}/branches/{name:path}")
def get_branch(ctx: Reader, name: str) -> BranchOut:
    """One branch."""
    return BranchOut(**dataclasses.asdict(operations.branch_view(ctx, ctx.forge.branch(name))))


@router.post("/{project}/branches", status_code=201)
def create_branch(ctx: Writer, body: NewBranch) -> BranchOut:
    """Create a branch (from `from_ref`, else by the branch model); names that git cannot
    hold beside existing branches are refused."""
    return BranchOut(**dataclasses.asdict(operations.create_branch(ctx, body.name, body.from_ref)))


@router.get("/{project}/compare")
def compare(ctx: Reader, base: str, head: str) -> list[str]:
    """Paths that differ between two refs."""
    return sorted(
        ctx.forge.changed_paths(operations.resolve(ctx, base), operations.resolve(ctx, head))
    )


@router.get("/{project}/ahead-behind")
def ahead_behind(ctx: Reader, base: str, head: str) -> Counts:
    """How many commits `head` has that `base` lacks, and the other way round."""
    ahead, behind = operations.ahead_behind(
        ctx, operations.resolve(ctx, base), operations.resolve(ctx, head)
    )
    return Counts(ahead=ahead, behind=behind)


@router.get("/{project}/tree")
def tree(ctx: Reader, paged: Paged, ref: str | None = None) -> list[TreeEntryOut]:
    """The files at a ref."""
    entries = ctx.forge.list_tree(operations.resolve(ctx, ref))
    return [
        TreeEntryOut(path=e.path, mode=e.mode.git, sha=e.sha, size=e.size)
        for e in paged.of(entries)
    ]


@router.get("/{project}/files/{path:path}", response_class=Response)
def read_file(ctx: Reader, path: str, ref: str | None = None) -> Response:
    """One file's bytes at a ref (ETag: the commit SHA and path)."""
    check_repo_path(path)
    sha = operations.resolve(ctx, ref)
    data = ctx.forge.read_file(sha, path)
    etag = base64.urlsafe_b64encode(f"{sha}:{path}".encode()).decode().rstrip("=")
    return Response(data, media_type="application/octet-stream", headers={"ETag": f'"{etag}"'})
