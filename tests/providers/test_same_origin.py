"""A forge's answer never sends our token elsewhere: a pagination link or a redirect to
another host is refused, or followed without the credential (python-gitlab follows a
foreign `Link: rel="next"` with the token and only warns; requests keeps `PRIVATE-TOKEN`
across a redirect to another host)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr

from providers.config import ForgeConfig
from providers.errors import ProviderError
from providers.registry import locate, open_forge
from tests.conftest import FAST_RETRY
from tests.forges.attacker import AttackerHost

SECRET = "glpat-HOSTILE-FORGE-0123456789"
Answer = Callable[[str, str], tuple[int, dict[str, str], bytes]]
"""(path, attacker origin) -> (status, headers, body)."""


@pytest.fixture
def attacker() -> Iterator[AttackerHost]:
    with AttackerHost() as host:
        yield host


def hostile_forge(answer: Answer, attacker: AttackerHost) -> Iterator[str]:
    """A forge on loopback whose every answer is `answer`'s; its origin."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = answer(self.path, attacker.url)
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def branch_list(path: str, elsewhere: str, kind: str) -> tuple[int, dict[str, str], bytes]:
    if "page=2" in path or "cursor=2" in path:
        return 200, {}, b"[]"  # a link rewritten onto the configured API ends the list
    if kind == "gitlab":
        page = [{"name": "main", "commit": {"id": "a" * 40}, "protected": False}]
        link = f'<{elsewhere}/api/v4/projects/g%2Fr/repository/branches?page=2>; rel="next"'
    else:
        page = [{"name": "main", "head": "a" * 40, "protected": False, "can_push": True}]
        link = f'<{elsewhere}/v1/projects/x/branches?cursor=2>; rel="next"'
    return 200, {"Link": link}, json.dumps(page).encode()


def test_a_gitlab_next_link_to_another_host_stays_on_the_configured_api(
    attacker: AttackerHost,
) -> None:
    """python-gitlab's `keep_base_url`: the next page is asked of the configured API."""
    for origin in hostile_forge(lambda p, e: branch_list(p, e, "gitlab"), attacker):
        config = ForgeConfig(locate(f"{origin}/g/r", "gitlab"), token=SecretStr(SECRET))
        forge = open_forge(ForgeConfig(config.location, token=config.token, retry=FAST_RETRY))
        try:
            assert [b.name for b in forge.branches()] == ["main"]
        finally:
            forge.close()
    assert attacker.carrying(SECRET) == []
    assert attacker.requests() == []


def test_a_service_next_link_to_another_host_is_refused(attacker: AttackerHost) -> None:
    for origin in hostile_forge(lambda p, e: branch_list(p, e, "service"), attacker):
        config = ForgeConfig(locate(f"{origin}/v1/projects/x"), token=SecretStr(SECRET))
        forge = open_forge(ForgeConfig(config.location, token=config.token, retry=FAST_RETRY))
        try:
            with pytest.raises(ProviderError, match="not the configured API"):
                forge.branches()
        finally:
            forge.close()
    assert attacker.carrying(SECRET) == []
    assert attacker.requests() == []


def test_a_redirect_to_another_host_loses_the_gitlab_token(attacker: AttackerHost) -> None:
    def redirect(path: str, elsewhere: str) -> tuple[int, dict[str, str], bytes]:
        return 302, {"Location": f"{elsewhere}/stolen{path}"}, b""

    for origin in hostile_forge(redirect, attacker):
        config = ForgeConfig(locate(f"{origin}/g/r", "gitlab"), token=SecretStr(SECRET))
        config = ForgeConfig(config.location, token=config.token, retry=FAST_RETRY)
        forge = open_forge(config)
        try:
            with pytest.raises(ProviderError):
                forge.branches()
        finally:
            forge.close()
    assert attacker.requests() != [], "requests did follow the redirect"
    assert attacker.carrying(SECRET) == [], "but without the token"
