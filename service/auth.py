"""Bearer API tokens scoped to projects and roles, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from service import problems
from service.problems import Problem
from service.settings import ApiToken, ProjectsFile, Role


def authorize(
    projects: ProjectsFile, header: str | None, project: str | None, role: Role
) -> ApiToken:
    """The token behind `Authorization: Bearer ...` if it may act on `project` with `role`.
    401 without a known token, 403 when its scope is too small."""
    scheme, _, offered = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not offered:
        raise Problem(401, "Authentication required", "Send Authorization: Bearer <API token>")
    found = None
    for candidate in projects.tokens:
        if candidate.token is not None and hmac.compare_digest(
            candidate.token.get_secret_value().encode(), offered.encode()
        ):
            found = candidate
    if found is None:
        raise Problem(401, "Authentication required", "The API token is not known to this service")
    if project is not None and "*" not in found.projects and project not in found.projects:
        raise Problem(403, "Forbidden", f"This token may not access project '{project}'")
    if found.role < role:
        raise Problem(
            403,
            "Forbidden",
            f"This token has the {found.role.name.lower()} role; {role.name.lower()} is needed",
        )
    return found


class BearerGate:
    """Refuse `/v1` requests that carry no known API token before anything else happens:
    a bad body from an unknown caller gets a 401, never a 422 that describes our schema.
    Webhooks are verified by their signatures instead; scopes are checked per route.

    A signed-in browser's GET (the pages' live updates) may present its session cookie
    instead: `from_cookie` turns it into the session token's `Authorization` header, so the
    API's one auth path decides. Writes always need the header (no cookie, no CSRF risk)."""

    def __init__(
        self,
        app: ASGIApp,
        projects: Callable[[], ProjectsFile],
        from_cookie: Callable[[str], str | None] | None = None,
    ) -> None:
        self.app = app
        self.projects = projects
        self.from_cookie = from_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Let the request through, or answer 401 at once."""
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and path.startswith("/v1/") and not path.endswith("/webhooks"):
            headers = dict(scope.get("headers") or [])
            header = headers.get(b"authorization", b"").decode("latin-1") or None
            if header is None and scope.get("method") in ("GET", "HEAD") and self.from_cookie:
                header = self._cookie_header(headers.get(b"cookie", b"").decode("latin-1"))
                if header is not None:
                    scope = {
                        **scope,
                        "headers": [
                            *scope.get("headers", []),
                            (b"authorization", header.encode("latin-1")),
                        ],
                    }
            try:
                authorize(self.projects(), header, None, Role.READ)
            except Problem as refused:
                await problems.response(refused, path)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _cookie_header(self, cookies: str) -> str | None:
        assert self.from_cookie is not None  # noqa: S101
        jar = SimpleCookie()
        try:
            jar.load(cookies)
        except CookieError:
            return None
        for morsel in jar.values():
            header = self.from_cookie(f"{morsel.key}={morsel.value}")
            if header is not None:
                return header
        return None
