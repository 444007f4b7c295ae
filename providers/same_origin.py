"""Credentials go to the configured API's origin and nowhere else, whatever a response says.

A forge's answer is untrusted (SPEC §8). It can name another host in a pagination `Link`
header (python-gitlab follows it with the token and only warns; our service client would
too) or in a redirect (requests drops `Authorization` when the host changes, but keeps
`PRIVATE-TOKEN` and `JOB-TOKEN`). Every HTTP adapter asks here before it sends a request
that carries its token.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import requests

from providers.errors import Unavailable

CREDENTIAL_HEADERS = ("Authorization", "PRIVATE-TOKEN", "JOB-TOKEN")
_DEFAULT_PORTS = {"https": 443, "http": 80}


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) as a connection sees it, with the scheme's default port."""
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    try:
        port = parsed.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parsed.hostname or "").lower(), port


def check(url: str, base: str) -> None:
    """`Unavailable` unless `url` is on `base`'s origin and under its path."""
    if origin(url) != origin(base) or not urllib.parse.urlsplit(url).path.startswith(
        urllib.parse.urlsplit(base).path.rstrip("/")
    ):
        where = "{}://{}".format(*origin(url)[:2])
        msg = f"The forge's answer pointed at {where}, which is not the configured API"
        raise Unavailable(
            msg,
            "Nothing was sent there. Check MELTANO_FORGE_API_URL and any proxy in front of "
            "the forge",
        )


class SameOriginSession(requests.Session):
    """A requests session that drops every credential header when a redirect leaves the
    origin of the request that carried it (requests itself drops only `Authorization`)."""

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: Any) -> None:
        """requests' own rule, then ours for the headers it does not know."""
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        before = origin(str(response.request.url))
        if origin(str(prepared_request.url)) != before:
            for name in CREDENTIAL_HEADERS:
                prepared_request.headers.pop(name, None)
