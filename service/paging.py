"""One pagination style for every list: `?limit=` and an opaque `?cursor=`, the next page's
address in a `Link: <...>; rel="next"` header (as GitHub and GitLab do)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TypeVar

from fastapi import Query, Request, Response

from service.problems import Problem

T = TypeVar("T")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page")
Cursor = Query(None, description="Where the page starts: the `cursor` of a `Link` header")


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def offset(cursor: str | None) -> int:
    """Where a page starts (0 without a cursor)."""
    return _decode(cursor) if cursor else 0


def _decode(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        text = ""
    kind, _, value = text.partition(":")
    if kind != "o" or not value.isdigit():
        raise Problem(400, "Invalid cursor", "Use the cursor of a Link header")
    return int(value)


def page(
    items: Sequence[T], request: Request, response: Response, limit: int, cursor: str | None
) -> list[T]:
    """The page of `items` the cursor points at; sets the `Link` header for the next one."""
    start = offset(cursor)
    chunk = list(items[start : start + limit])
    if start + limit < len(items):
        url = request.url.include_query_params(cursor=_encode(start + limit), limit=limit)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return chunk
