"""Bearer API tokens scoped to projects and roles, compared in constant time; the tokens
in force follow the projects files without a restart."""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from client.settings import SettingsError
from service import problems
from service.problems import Problem
from service.settings import ApiToken, ProjectsFile, Role, ServiceSettings

log = logging.getLogger(__name__)
FileStamp = tuple[int, int, int, int] | None
Stamp = tuple[FileStamp, ...]


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


class HoldsProjects(Protocol):
    """What the watch keeps up to date (the service state)."""

    settings: ServiceSettings
    projects: ProjectsFile


def _stamp(paths: tuple[Path, ...]) -> Stamp:
    """Device, inode, size and mtime of each file (None when missing): an edit, a rename
    over it (how editors and Kubernetes ConfigMaps replace files) or a removal changes it."""
    stamps: list[FileStamp] = []
    for path in paths:
        try:
            found = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns))
    return tuple(stamps)


def still_authorized(
    projects: Callable[[], ProjectsFile], token: ApiToken | None, project: str, role: Role
) -> Callable[[], bool]:
    """For a long answer (the event stream): whether `token` may still act on `project`
    with `role` under the projects in force now."""
    secret = token.token.get_secret_value() if token and token.token else None

    def check() -> bool:
        if secret is None:
            return False
        try:
            authorize(projects(), f"Bearer {secret}", project, role)
        except Problem:
            return False
        return True

    return check


class ProjectsWatch:
    """The projects and tokens in force, reloaded when a file they come from changes (the
    projects file, the setup screen's, a token's `token_file`). Every request goes through
    the gate that calls this first, so removing a token ends its bearer access and its
    sessions at the next request, without a restart. The check is a few `stat` calls.

    A file that no longer validates leaves the last good projects in force (a typo must not
    lock every admin out) and says why in the log, once per change."""

    def __init__(self, state: HoldsProjects) -> None:
        self.state = state
        self._lock = threading.Lock()
        self._stamp = _stamp(self._paths())

    def _paths(self) -> tuple[Path, ...]:
        token_files = (t.token_file for t in self.state.projects.tokens if t.token_file)
        return (*self.state.settings.projects_files, *token_files)

    def __call__(self) -> ProjectsFile:
        """The projects in force now."""
        with self._lock:
            stamp = _stamp(self._paths())
            if stamp != self._stamp:
                try:
                    self.state.projects = self.state.settings.load_projects()
                except SettingsError as exc:
                    log.error("%s. The previous projects stay in force until it is fixed.", exc)  # noqa: TRY400 - one line, no traceback
                self._stamp = _stamp(self._paths())
            return self.state.projects


class BearerGate:
    """Refuse `/v1` requests that carry no known API token before anything else happens:
    a bad body from an unknown caller gets a 401, never a 422 that describes our schema.
    Webhooks are verified by their signatures instead; scopes are checked per route.
    `projects` is asked on every HTTP request, pages included (a `ProjectsWatch` reloads a
    changed projects file there), so every request sees the tokens in force.

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
        in_force = self.projects() if scope["type"] == "http" else None
        if in_force is not None and path.startswith("/v1/") and not path.endswith("/webhooks"):
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
            # Every /v1 write needs the write role at least: a read token's body is refused
            # before a byte of it is read (the routes check the project and role again).
            safe = scope.get("method") in ("GET", "HEAD", "OPTIONS")
            try:
                authorize(in_force, header, None, Role.READ if safe else Role.WRITE)
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
