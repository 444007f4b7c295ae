"""Plugin environments for runners (`service.plugin_envs`: trust, leases, storage).

`GET /plugin-envs/{key}` streams an entry (read role); `PUT` uploads one (write role;
verified before it is stored, never over an entry made); `POST /plugin-envs/leases` takes,
renews or waits for the leases of entries a runner is about to install, and
`POST /plugin-envs/leases/release` gives them back. A project's entries are its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import IO, Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from client.plugin_cache import CHUNK, EntryKey, EntryRefused, Manifest
from service.body_limits import too_large
from service.deps import Reader, Writer
from service.plugin_envs import DIGEST, LEASE_WAIT_MAX, PLUGIN, LeaseState, PluginEnvs
from service.problems import API_ERRORS, Problem

router = APIRouter(
    prefix="/v1/projects/{project}/plugin-envs", tags=["plugin-envs"], responses=API_ERRORS
)
Key = Annotated[str, PathParam(pattern=DIGEST, description="`EntryKey.digest`")]
SHA256 = r"^[0-9a-f]{64}$"
MAX_KEYS = 64
UPLOADS = "Plugin environments"
log = logging.getLogger(__name__)


class EntryOut(BaseModel):
    """An entry's manifest."""

    key: str
    sha256: str
    size: int
    plugin: str
    fingerprint: str
    python: str
    platform: str
    venv: str
    created: float
    stored: bool = Field(description="False when the entry existed already (the upload dropped)")


class LeaseRequest(BaseModel):
    holder: str = Field(
        min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="The runner's id"
    )
    keys: list[Annotated[str, Field(pattern=DIGEST)]] = Field(min_length=1, max_length=MAX_KEYS)
    wait: float = Field(
        0.0, ge=0, le=LEASE_WAIT_MAX, description="Seconds to wait while every key is held"
    )


class LeasesOut(BaseModel):
    leases: dict[str, LeaseState]
    expires_in: float = Field(description="Seconds a granted lease lasts unless asked again")


class Release(BaseModel):
    holder: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    keys: list[Annotated[str, Field(pattern=DIGEST)]] = Field(min_length=1, max_length=MAX_KEYS)


def plugin_envs(request: Request) -> PluginEnvs:
    """The service's plugin cache, or 404 when it holds none."""
    found: PluginEnvs | None = request.app.state.plugin_envs
    if found is None:
        raise Problem(
            404,
            "No plugin cache",
            "This service holds no plugin environments. Set MELTANO_FORGE_SERVICE_PLUGIN_CACHE "
            "on the service to a folder for them.",
        )
    return found


def _writable(store: PluginEnvs, project: str) -> None:
    if not store.cache(project).writable:
        raise Problem(
            503,
            "Plugin cache read-only",
            "The service cannot write its plugin cache folder. Make "
            "MELTANO_FORGE_SERVICE_PLUGIN_CACHE writable for the service.",
        )


@router.post("/leases")
async def leases(ctx: Writer, body: LeaseRequest, request: Request) -> LeasesOut:
    """Take (or renew) the leases of entries this runner is about to install: each is
    `stored`, `granted` (install and upload it) or `held` (another runner installs it).
    With `wait`, an answer where every key is held waits that long for one to change."""
    store = plugin_envs(request)
    name = ctx.config.name
    await run_in_threadpool(_writable, store, name)
    deadline = time.monotonic() + body.wait
    while True:
        answer = await run_in_threadpool(store.leases, name, body.holder, body.keys)
        if answer.settled or time.monotonic() >= deadline:
            return LeasesOut(leases=answer.states, expires_in=answer.expires_in)
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            if await run_in_threadpool(store.peek, name, body.holder, body.keys):
                break


@router.post("/leases/release", status_code=204)
def release(ctx: Writer, body: Release, request: Request) -> Response:
    """Give back leases this runner holds (its install failed): waiters may take them."""
    plugin_envs(request).release(ctx.config.name, body.holder, body.keys)
    return Response(status_code=204)


@router.get("/{key}", response_class=StreamingResponse)
def get_entry(ctx: Reader, key: Key, request: Request) -> Response:
    """The entry's archive (a tar of one virtualenv folder); `X-Entry-Sha256` and the
    length let the runner verify it as it unpacks."""
    found = plugin_envs(request).open(ctx.config.name, key)
    if found is None:
        raise Problem(404, "Not found", "The service's plugin cache holds no such entry.")
    manifest, handle = found
    return StreamingResponse(
        _chunks(handle),
        media_type="application/x-tar",
        headers={
            "Content-Length": str(manifest.size),
            "X-Entry-Sha256": manifest.sha256,
            "ETag": f'"{manifest.sha256}"',
        },
    )


async def _chunks(handle: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await run_in_threadpool(handle.read, CHUNK):
            yield chunk
    finally:
        handle.close()


@router.put("/{key}", status_code=201)
async def put_entry(
    ctx: Writer,
    key: Key,
    request: Request,
    response: Response,
    plugin: Annotated[str, Query(pattern=PLUGIN, max_length=200)],
    fingerprint: Annotated[str, Query(pattern=SHA256)],
    python: Annotated[str, Query(min_length=1, max_length=1000)],
    platform: Annotated[str, Query(min_length=1, max_length=200)],
    venv: Annotated[str, Query(pattern=r"^/", max_length=4000)],
    sha256: Annotated[str, Query(pattern=SHA256)],
) -> EntryOut:
    """Upload an entry: the tar of one virtualenv folder, the key's fields and its
    SHA-256. The service checks all of it before it is stored; an entry already made is
    kept (200, the upload dropped). Bounded by MELTANO_FORGE_SERVICE_PLUGIN_ENV_MAX_BYTES."""
    store = plugin_envs(request)
    name = ctx.config.name
    entry = EntryKey(fingerprint, python, platform, venv)
    if entry.digest != key:
        raise Problem(
            422,
            "Key mismatch",
            "The key is not the digest of the fields sent with it. Send the entry's own key.",
        )
    await run_in_threadpool(_writable, store, name)
    limit = ctx.state.settings.service_plugin_env_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(UPLOADS, limit)
    upload = store.upload_path(name, key)
    try:
        await _receive(request, upload.open("wb"), limit)
        manifest, stored = await run_in_threadpool(
            store.receive, name, entry, plugin, upload, sha256
        )
    except EntryRefused as exc:
        raise Problem(
            422, "Entry refused", f"The upload was not stored: {exc}. Upload the entry again."
        ) from None
    finally:
        upload.unlink(missing_ok=True)
    if not stored:
        response.status_code = 200
    else:
        log.info(
            "plugin cache: %s stored %s for project %s",
            ctx.token.name if ctx.token else "a caller",
            plugin,
            name,
        )
    return _out(manifest, stored)


async def _receive(request: Request, handle: IO[bytes], limit: int) -> None:
    """The body to `handle`, counted as it comes: 413 past `limit`."""
    size = 0
    held = bytearray()
    with handle:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(UPLOADS, limit)
            held += chunk
            if len(held) >= CHUNK:
                await run_in_threadpool(handle.write, bytes(held))
                held.clear()
        if held:
            await run_in_threadpool(handle.write, bytes(held))


def _out(manifest: Manifest, stored: bool) -> EntryOut:
    return EntryOut(
        key=manifest.key,
        sha256=manifest.sha256,
        size=manifest.size,
        plugin=manifest.plugin,
        fingerprint=manifest.fingerprint,
        python=manifest.python,
        platform=manifest.platform,
        venv=manifest.venv,
        created=manifest.created,
        stored=stored,
    )
