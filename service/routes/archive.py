"""`GET /archive`: a commit's tar.gz, cached by SHA and fetched once for many runners."""

from __future__ import annotations

from fastapi import APIRouter, Header, Response
from fastapi.responses import FileResponse

from service.deps import Reader, StateDep
from service.routes.projects import resolve

router = APIRouter(prefix="/v1/projects/{project}", tags=["archive"])


@router.get("/archive", response_class=FileResponse)
def archive(
    ctx: Reader,
    state: StateDep,
    ref: str | None = None,
    if_none_match: str | None = Header(default=None),
) -> Response:
    """The tar.gz of `ref` (SHA or branch); the ETag is the commit SHA."""
    sha = resolve(ctx, ref)
    etag = f'"{sha}"'
    if if_none_match == etag:
        return Response(status_code=304, headers={"ETag": etag})
    path = state.cache.path_for(ctx.forge, ctx.config.name, sha)
    return FileResponse(
        path,
        media_type="application/gzip",
        headers={"ETag": etag, "X-Commit-Sha": sha},
        filename=f"{ctx.config.name}-{sha[:12]}.tar.gz",
    )
