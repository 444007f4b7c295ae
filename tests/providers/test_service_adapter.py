"""The service adapter over real HTTP: the service itself, and a proxy in front of it.

Its answers go through the same status table as every forge's (a proxy's bare 429 is a
rate limit), and its commits are checked against the configured limits like every
adapter's, before anything is sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from providers.config import ForgeConfig
from providers.contract import FileChange, FileMode, Forge
from providers.errors import RateLimited, UnsafeInput
from providers.registry import locate, open_forge
from providers.safety import Limits
from tests.conftest import FAST_RETRY, ForgeEnv
from tests.service.conftest import WRITE, Service, receiver, service

__all__ = ["receiver", "service"]  # the service fixture and what it needs

on_github = pytest.mark.parametrize("env", ["github"], indirect=True)
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Proxy:
    """A reverse proxy on a loopback port that answers `refusals` requests with a bare
    429 (no problem document, no word "rate") before it forwards the rest."""

    upstream: str
    retry_after: str
    refusals: int = 1
    seen: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def proxy(service: Service) -> Iterator[Proxy]:
    record = Proxy(str(service.client.base_url).rstrip("/"), retry_after="1")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                record.seen.append(f"{self.command} {self.path}")
                refuse = record.refusals > 0
                record.refusals -= refuse
            if refuse:
                text = b"Too Many Requests\n"
                self.send_response(429)
                self.send_header("Retry-After", record.retry_after)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            answer = httpx.request(
                self.command, record.upstream + self.path, headers=headers, content=body
            )
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in _HOP | {"content-encoding"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PUT = _relay

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield record
    server.shutdown()
    server.server_close()


def service_forge(url: str, **overrides: Any) -> Forge:
    """An adapter for the service's project at `url`, with the write token."""
    settings: dict[str, Any] = {"token": SecretStr(WRITE), "retry": FAST_RETRY, **overrides}
    return open_forge(ForgeConfig(locate(f"{url}/v1/projects/warehouse"), **settings))


@on_github
def test_a_proxys_bare_429_is_a_rate_limit_and_is_retried(
    env: ForgeEnv, service: Service, proxy: Proxy
) -> None:
    head = env.seed({"meltano.yml": b"version: 1\n"})
    forge = service_forge(proxy.url)
    try:
        assert forge.branch("main").head == head
    finally:
        forge.close()
    assert len(proxy.seen) == 2, "refused once with a bare 429, then answered"


@on_github
def test_a_proxys_long_429_says_when_to_try_again_without_waiting(
    env: ForgeEnv, service: Service, proxy: Proxy
) -> None:
    env.seed({"meltano.yml": b"version: 1\n"})
    proxy.retry_after, proxy.refusals = "3600", 100
    forge = service_forge(proxy.url)
    try:
        with pytest.raises(RateLimited) as limited:
            forge.branch("main")
    finally:
        forge.close()
    assert limited.value.retry_at is not None
    assert "Try again after" in str(limited.value)
    assert len(proxy.seen) == 1, "an hour's Retry-After is not slept through"


@on_github
def test_commits_through_the_service_keep_the_configured_limits(
    env: ForgeEnv, service: Service
) -> None:
    base = env.seed({"meltano.yml": b"version: 1\n"})
    limits = Limits(max_file_bytes=1_000, max_total_bytes=1_500)
    forge = service_forge(str(service.client.base_url).rstrip("/"), archive_limits=limits)
    env.clear_log()
    try:
        with pytest.raises(UnsafeInput, match="over the limit"):
            forge.commit(
                "development",
                base,
                [FileChange.put("data/big.csv", b"x" * 2_000)],
                "too large for this runner",
            )
        with pytest.raises(UnsafeInput, match="1,500 bytes"):
            forge.commit(
                "development",
                base,
                [
                    FileChange.put("data/a.csv", b"a" * 900),
                    FileChange.put("meltano.yml", b"b" * 900, base_mode=FileMode.REGULAR),
                ],
                "too large together",
            )
    finally:
        forge.close()
    assert env.head("development") is None, "nothing reached the forge"
    assert env.requests("POST") == 0
