"""Request bodies counted as they arrive and refused at their limit (413), before parsing.

A declared `Content-Length` is not enough: a chunked body declares none, and Starlette's
`request.body()` and its urlencoded form parser read whatever comes, whole, into memory
(300 fields of 1 MB on the unauthenticated `/signin` grew the server by 300 MB). So every
body that is parsed here is counted chunk by chunk, and reading stops at the limit:

- webhooks, through `read_body` (the route's limit, `MELTANO_FORGE_WEBHOOK_MAX_BYTES`);
- every form, urlencoded or multipart, on any route, through the `FormLimit` middleware
  (`MELTANO_FORGE_FORM_MAX_BYTES`), which holds the body before any route sees it.

What a client sends past the limit is never read by us: the server discards it.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import problems
from service.problems import Problem

FORMS = (b"application/x-www-form-urlencoded", b"multipart/form-data")


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


class FormLimit:
    """Hold a form's body, counting, before any route parses it; a body over the limit is
    answered 413 (a page for a browser, problem+json otherwise) without reading the rest.
    `limit` is asked per request, so tests and settings decide it."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass everything but forms straight through; bound forms."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if kind not in FORMS:
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = _declared(headers)
        messages: list[Message] = []
        size = 0
        refused = declared is not None and declared > limit
        while not refused:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: let the route see it
            size += len(message.get("body", b""))
            refused = size > limit
            if not message.get("more_body", False):
                break
        if refused:
            response = await problems.handle_problem(Request(scope), too_large("Forms", limit))
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(messages, receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """The held messages once, then the connection's own `receive` (a disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
