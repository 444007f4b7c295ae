"""RFC 9457 problem documents, and the one place errors become HTTP statuses."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from client.guard import SecretRefused
from client.policy import ReadOnly, ReadOnlyBranch
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


_STATUS: list[tuple[type[BaseException], int, str, str]] = [
    (ReadOnlyBranch, 403, "Read-only branch", ""),
    (
        SecretRefused,
        422,
        "Secret refused",
        "Nothing was committed. Keep secrets in .env or an environment variable; an "
        "administrator can allow a path with the service's MELTANO_FORGE_ALLOW_SECRETS",
    ),
    (Conflict, 409, "Conflict", "Read the branch again, merge, and send the commit again"),
    (NotFound, 404, "Not found", "Check the branch, commit or path"),
    (UnsafeInput, 422, "Unsafe input", "Nothing was written; change the input"),
    (InvalidRequest, 400, "Invalid request", "Change the request"),
    (RateLimited, 503, "Forge rate limit", "Try again later"),
    (Unavailable, 503, "Forge unavailable", "Try again later"),
    (
        AuthenticationFailed,
        502,
        "The forge rejected the service's token",
        "An administrator must renew the project's forge token",
    ),
    (
        PermissionDenied,
        502,
        "The service's token may not do this on the forge",
        "An administrator must give the project's forge token more access",
    ),
    (ProviderError, 502, "Forge error", "Try again later"),
]


def from_error(error: BaseException, hide: tuple[str, ...] = ()) -> Problem:
    """The problem for a domain error, in the service's own words: the reason, and what a
    caller of this API can do (never the CLI's settings or environment variables). `hide`
    lists strings (a local repository's path) that must not reach a caller."""
    for kind, status, title, instruction in _STATUS:
        if isinstance(error, kind):
            extra: dict[str, Any] = {}
            if isinstance(error, Conflict):
                extra["paths"] = list(error.paths)
            retry_at = getattr(error, "retry_at", None)
            if retry_at is not None:
                extra["retry_at"] = retry_at.isoformat()
            if isinstance(error, ReadOnlyBranch):
                detail = read_only_words(error)
            else:
                reason = getattr(error, "reason", str(error))
                detail = f"{reason}. {instruction}." if instruction else f"{reason}."
            return Problem(status, title, public(detail, hide), **extra)
    return Problem(500, "Internal error", "")


def public(text: str, hide: tuple[str, ...] = ()) -> str:
    """The one way words about an error leave the service (problem documents, pages,
    promotion results): every server path in `hide` (local repositories, the cache)
    replaced, then `redact`, which logs and SSE frames go through as well, masks every
    known token and every echoed credential header."""
    for path in hide:
        text = text.replace(path, "<repository>")
    return redact(text)


def shown(error: BaseException, hide: tuple[str, ...] = ()) -> str:
    """An error's own words (reason and instruction) for a page, through `public`."""
    return public(str(error), hide)


def read_only_words(error: ReadOnlyBranch) -> str:
    """Why a branch is read-only and what to do, in the service's words (not the CLI's)."""
    branch, working = error.branch, error.working
    if error.why is ReadOnly.FORGE:
        return f"The forge protects the branch '{branch}'. Commit to '{working}' and promote it."
    if error.why is ReadOnly.NO_PUSH:
        return f"The project's forge token may not push to '{branch}'."
    if error.why is ReadOnly.ROLE:
        return "Your token has the read role: it may look, not commit."
    if branch == working:
        return f"The branch '{branch}' is protected in this project's configuration."
    return (
        f"The branch '{branch}' is protected in this project's configuration. Commit to "
        f"'{working}' and open a promotion."
    )


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


def _answer(request: Request, problem: Problem) -> Response:
    """problem+json for the API and for programs; a page for a browser at a page (when the
    app has pages)."""
    as_page = getattr(request.app.state, "error_page", None)
    browser = "text/html" in request.headers.get("accept", "")
    if (
        as_page is not None
        and browser
        and not request.url.path.startswith(("/v1/", "/healthz", "/readyz", "/metrics"))
    ):
        page: Response = as_page(request, problem.status, problem.title, problem.detail)
        return page
    return response(problem, request.url.path)


async def handle_problem(request: Request, exc: Exception) -> Response:
    """Exception handler for Problem."""
    assert isinstance(exc, Problem)  # noqa: S101
    return _answer(request, exc)


async def handle_domain(request: Request, exc: Exception) -> Response:
    """Exception handler for provider and policy errors."""
    state = getattr(request.app.state, "service", None)
    hide = state.hidden_paths() if state is not None else ()
    return _answer(request, from_error(exc, hide))


async def handle_http(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown routes, wrong methods) as problem documents too."""
    status = int(getattr(exc, "status_code", 500))
    titles = {404: "Not found", 405: "Method not allowed"}
    detail = str(getattr(exc, "detail", "")) or titles.get(status, "")
    if status == 404:
        detail = f"No route {request.method} {request.url.path}"
    return _answer(request, Problem(status, titles.get(status, "Error"), detail))


async def handle_validation(request: Request, exc: Exception) -> JSONResponse:
    """Request validation errors as 422 problems naming the first bad field."""
    errors: list[dict[str, Any]] = getattr(exc, "errors", list)()
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return response(
        Problem(422, "Invalid request", f"{where}: {first.get('msg', 'invalid')}"), request.url.path
    )


PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "paths": {"type": "array", "items": {"type": "string"}},
        "retry_at": {"type": "string"},
    },
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses, each a problem+json document."""
    words = {
        400: "Invalid request",
        401: "No known API token",
        403: "The token's role or projects do not allow this, or the branch is read-only",
        404: "No such project, branch, commit or path",
        409: "The branch changed the same files (`paths`)",
        422: "Invalid or unsafe input",
        502: "The forge refused the service's own token",
        503: "The forge is unavailable or rate-limited (`retry_at`)",
    }
    return {
        status: {
            "description": words[status],
            "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }


API_ERRORS = documented(400, 401, 403, 404, 422, 502, 503)
"""What every `/v1` operation may answer besides success."""
