"""RFC 9457 problem documents, and the one place errors become HTTP statuses."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from client.policy import ReadOnlyBranch
from providers.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderError,
    RateLimited,
    Unavailable,
    UnsafeInput,
)
from providers.redaction import redact

PROBLEM = "application/problem+json"


class Problem(Exception):
    """An error answered as problem+json."""

    def __init__(self, status: int, title: str, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


_STATUS: list[tuple[type[BaseException], int, str]] = [
    (ReadOnlyBranch, 403, "Read-only branch"),
    (Conflict, 409, "Conflict"),
    (NotFound, 404, "Not found"),
    (UnsafeInput, 422, "Unsafe input"),
    (InvalidRequest, 400, "Invalid request"),
    (RateLimited, 503, "Forge rate limit"),
    (Unavailable, 503, "Forge unavailable"),
    (AuthenticationFailed, 502, "The forge rejected the service's token"),
    (PermissionDenied, 502, "The service's token may not do this on the forge"),
    (ProviderError, 502, "Forge error"),
]


def from_error(error: BaseException) -> Problem:
    """The problem for a domain error."""
    for kind, status, title in _STATUS:
        if isinstance(error, kind):
            extra: dict[str, Any] = {}
            if isinstance(error, Conflict):
                extra["paths"] = list(error.paths)
            retry_at = getattr(error, "retry_at", None)
            if retry_at is not None:
                extra["retry_at"] = retry_at.isoformat()
            return Problem(status, title, redact(str(error)), **extra)
    return Problem(500, "Internal error", "")


def response(problem: Problem, instance: str = "") -> JSONResponse:
    """The problem+json response."""
    body = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        **problem.extra,
    }
    if problem.detail:
        body["detail"] = problem.detail
    if instance:
        body["instance"] = instance
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else {}
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM, headers=headers)


async def handle_problem(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler for Problem."""
    assert isinstance(exc, Problem)  # noqa: S101
    return response(exc, request.url.path)


async def handle_domain(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler for provider and policy errors."""
    return response(from_error(exc), request.url.path)


async def handle_validation(request: Request, exc: Exception) -> JSONResponse:
    """Request validation errors as 422 problems naming the first bad field."""
    errors: list[dict[str, Any]] = getattr(exc, "errors", list)()
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return response(
        Problem(422, "Invalid request", f"{where}: {first.get('msg', 'invalid')}"), request.url.path
    )
