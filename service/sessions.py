"""Signing in to the pages: an API token pasted once becomes a session cookie (HttpOnly,
SameSite=Strict, with an expiry); each session has a CSRF token that every form carries.

The cookie holds a random id; the database keeps only its sha256, the sha256 of the API
token's secret and the expiry. Each lookup matches it against the tokens in force, which
follow the projects file without a restart (`service.auth.ProjectsWatch`), so signing out,
removing the token from the projects file or replacing its secret ends the session at the
next request.
A session acts exactly as its API token would: the same roles, the same projects.

The sign-in form itself carries a token too (login CSRF): the form's hidden value must
equal the pre-session cookie that the form's page set (HttpOnly, SameSite=Strict, path
`/signin`). Another site can neither read the value nor make the browser send the cookie,
so it cannot sign a browser in as the attacker's token.

This sits beside `auth`, below `deps`: the pages' dependencies (`WebReader` and the rest)
look sessions up as the API's look tokens up.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from service.auth import authorize
from service.settings import ApiToken, Role
from service.storage import web_sessions

if TYPE_CHECKING:  # the state holds what sessions need; `deps` builds on sessions
    from service.deps import ServiceState

COOKIE = "mf_session"
SIGNIN_COOKIE = "mf_signin"
SIGNIN_LIFE = 3600
"""Seconds a sign-in form stays usable."""


@dataclass(frozen=True)
class Session:
    """A signed-in browser."""

    token: ApiToken
    csrf: str
    expires_at: float

    def may(self, role: Role) -> bool:
        """Whether the session's token has `role` (or more)."""
        return self.token.role >= role


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _token_digest(token: ApiToken) -> str | None:
    return _digest(token.token.get_secret_value()) if token.token is not None else None


def sign_in(state: ServiceState, api_token: str) -> tuple[str, Session]:
    """A new session for a known API token (401 `Problem` otherwise); (cookie, session)."""
    token = authorize(state.projects, f"Bearer {api_token}", None, Role.READ)
    return start(state, token)


def start(state: ServiceState, token: ApiToken) -> tuple[str, Session]:
    """A new session for `token`."""
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = time.time()
    expires = now + state.settings.session_hours * 3600
    with state.engine.begin() as connection:
        connection.execute(
            web_sessions.insert().values(
                id_sha256=_digest(cookie),
                token_name=token.name,
                token_sha256=_token_digest(token),
                csrf=csrf,
                created_at=now,
                expires_at=expires,
            )
        )
        connection.execute(web_sessions.delete().where(web_sessions.c.expires_at < now))
    return cookie, Session(token, csrf, expires)


def lookup(state: ServiceState, cookie: str | None) -> Session | None:
    """The live session behind a cookie, if any (its token must still be configured)."""
    if not cookie:
        return None
    with state.engine.connect() as connection:
        row = connection.execute(
            sa.select(web_sessions).where(web_sessions.c.id_sha256 == _digest(cookie))
        ).first()
    if row is None or row.expires_at < time.time() or not row.token_sha256:
        return None
    token = next(
        (
            t
            for t in state.projects.tokens
            if hmac.compare_digest(_token_digest(t) or "", row.token_sha256)
        ),
        None,
    )
    if token is None:
        return None
    return Session(token, row.csrf, row.expires_at)


def sign_out(state: ServiceState, cookie: str | None) -> None:
    """End the session behind a cookie."""
    if cookie:
        with state.engine.begin() as connection:
            connection.execute(
                web_sessions.delete().where(web_sessions.c.id_sha256 == _digest(cookie))
            )


def csrf_ok(session: Session, offered: str | None) -> bool:
    """The form's CSRF token is the session's (constant-time)."""
    return bool(offered) and hmac.compare_digest(session.csrf.encode(), (offered or "").encode())


def signin_nonce() -> str:
    """A new sign-in form token (the pre-session cookie and the form's hidden field)."""
    return secrets.token_urlsafe(24)


def signin_csrf_ok(cookie: str | None, offered: str | None) -> bool:
    """The sign-in form came from this site's page: its token is the cookie's
    (constant-time; both present)."""
    return (
        bool(cookie)
        and bool(offered)
        and hmac.compare_digest((cookie or "").encode(), (offered or "").encode())
    )
