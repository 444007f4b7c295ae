"""Request bodies counted as they arrive and refused at their limit (413), before parsing.

A declared `Content-Length` is not enough: a chunked body declares none, and Starlette's
`request.body()` and its urlencoded form parser read whatever comes, whole, into memory
(300 fields of 1 MB on the unauthenticated `/signin` grew the server by 300 MB). So every
body that is parsed here is counted chunk by chunk, and reading stops at the limit:

- webhooks, through `read_body` (the route's limit, `MELTANO_FORGE_WEBHOOK_MAX_BYTES`);
- every body on any route, through the `BodyLimit` middleware, which holds it before any
  route sees it: forms at `MELTANO_FORGE_FORM_MAX_BYTES`, webhooks at their limit, the
  API's JSON at `MELTANO_FORGE_BODY_MAX_BYTES`.

What a client sends past the limit is never read by us: the server discards it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import problems
from service.problems import Problem

FORMS = (b"application/x-www-form-urlencoded", b"multipart/form-data")
STREAMED = re.compile(r"^/v1/projects/[^/]+/plugin-envs/[0-9a-f]{64}$")
"""A `PUT` here (a plugin environment, up to MELTANO_FORGE_SERVICE_PLUGIN_ENV_MAX_BYTES)
is not held: its route counts it as it streams to disk, where holding would keep it in
memory (`service.routes.plugin_envs`)."""


def too_large(what: str, limit: int) -> Problem:
    """The one 413 every body limit answers."""
    return Problem(
        413, "Payload too large", f"{what} are limited to {limit:,} bytes. Send less at once."
    )


def _declared(headers: dict[bytes, bytes]) -> int | None:
    value = headers.get(b"content-length", b"").strip()
    return int(value) if value.isdigit() else None


async def read_body(request: Request, limit: int, what: str = "Webhook bodies") -> bytes:
    """The body, read chunk by chunk and refused (413) as soon as it passes `limit`,
    whether or not it declared a length."""
    declared = _declared({k.lower(): v for k, v in request.headers.raw})
    if declared is not None and declared > limit:
        raise too_large(what, limit)
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise too_large(what, limit)
        body += chunk
    return bytes(body)


class BodyLimit:
    """Hold every request body, counting, before any route parses it; a body over its limit
    is answered 413 (a page for a browser, problem+json otherwise) without reading the rest.
    Forms take `form_limit` (they reach unauthenticated pages), webhooks `webhook_limit`,
    every other body (the API's JSON) `body_limit`. Limits are asked per request, so tests
    and settings decide them. A request with more than one Content-Type is refused: which
    one a parser believes is a guess (the last one slipped forms past this check)."""

    def __init__(
        self,
        app: ASGIApp,
        form_limit: Callable[[], int],
        webhook_limit: Callable[[], int],
        body_limit: Callable[[], int],
    ) -> None:
        self.app = app
        self.form_limit, self.webhook_limit, self.body_limit = form_limit, webhook_limit, body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass bodiless requests straight through; bound the rest."""
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "PUT" and STREAMED.match(str(scope.get("path", ""))):
            await self.app(scope, receive, send)  # the route counts it (see STREAMED)
            return
        raw = scope.get("headers") or []
        kinds = [v for k, v in raw if k.lower() == b"content-type"]
        if len(kinds) > 1:
            refused = Problem(400, "Bad request", "Send one Content-Type header, not several.")
            await (await problems.handle_problem(Request(scope), refused))(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in raw}
        kind = (kinds[0] if kinds else b"").split(b";")[0].strip().lower()
        if kind in FORMS:
            limit, what = self.form_limit(), "Forms"
        elif str(scope.get("path", "")).endswith("/webhooks"):
            limit, what = self.webhook_limit(), "Webhook bodies"
        else:
            limit, what = self.body_limit(), "Request bodies"
        declared = _declared(headers)
        messages: list[Message] = []
        size = 0
        too_big = declared is not None and declared > limit
        while not too_big:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: let the route see it
            size += len(message.get("body", b""))
            too_big = size > limit
            if not message.get("more_body", False):
                break
        if too_big:
            response = await problems.handle_problem(Request(scope), too_large(what, limit))
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(messages, receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """The held messages once, then the connection's own `receive` (a disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
