"""`GET /archive`: a commit's tar.gz, cached by SHA and fetched once for many runners.

The route is asynchronous and its access check too (the same `ProjectAccess` as every
route, run on the event loop: it reads only memory), so a warm pull of a SHA costs no
thread hop at all: the archive's bytes come from the cache's memory (small archives) with
the headers `FileResponse` would send. Branch names (the head cache may ask the forge)
and cold archives (one forge download for many runners) run in the thread pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, Security
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from providers.names import is_sha
from service.archive_cache import Cached
from service.deps import BEARER, ProjectAccess, ProjectContext
from service.routes.projects import resolve
from service.settings import Role

router = APIRouter(prefix="/v1/projects/{project}", tags=["archive"])
_READ = ProjectAccess(Role.READ)


async def reader(
    project: str,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> ProjectContext:
    """`Reader`, without the thread hop: token and project checks read only memory."""
    return _READ(project, request.app.state.service, credentials)


class ArchiveResponse(FileResponse):
    """`FileResponse` with its headers from the cache's stat data; the body from memory
    when the cache holds it and no range was asked for, else from the file as usual."""

    def __init__(self, cached: Cached, headers: dict[str, str], filename: str) -> None:
        super().__init__(
            cached.path,
            media_type="application/gzip",
            headers=headers,
            filename=filename,
            stat_result=cached.stat,
        )
        self.data = cached.data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the bytes in one message, or let `FileResponse` stream the file."""
        plain = (
            self.data is not None
            and scope["type"] == "http"
            and scope["method"] == "GET"
            and not any(name == b"range" for name, _ in scope.get("headers", ()))
        )
        if not plain:
            await super().__call__(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.data})


@router.get("/archive", response_class=FileResponse)
async def archive(
    ctx: Annotated[ProjectContext, Security(reader, scopes=["read"])],
    ref: str | None = None,
    if_none_match: str | None = Header(default=None),
) -> Response:
    """The tar.gz of `ref` (SHA or branch); the ETag is the commit SHA."""
    sha = ref if ref and is_sha(ref) else await run_in_threadpool(resolve, ctx, ref)
    etag = f'"{sha}"'
    if if_none_match == etag:
        return Response(status_code=304, headers={"ETag": etag})
    cache, name = ctx.state.cache, ctx.config.name
    cached = cache.hot(name, sha)
    if cached is None:
        cached = await run_in_threadpool(cache.cached, ctx.forge, name, sha)
    return ArchiveResponse(cached, {"ETag": etag, "X-Commit-Sha": sha}, f"{name}-{sha[:12]}.tar.gz")
