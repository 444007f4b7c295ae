"""The attacker's host: a loopback HTTP server that records every request it is sent.

Trust tests point a hostile `meltano.yml` at it and then ask what it saw: no request at
all where the design sends nothing, and never a credential in any case. It answers like a
forge that does not know the repository (404 JSON), so a client that did reach it would
fail plausibly rather than hang.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes


@dataclass
class AttackerHost:
    """Start with `with AttackerHost() as host:`; `host.url` is its origin."""

    tls: bool = False
    """Serve https with a self-signed certificate for 127.0.0.1 (`cert` is its file): a
    client that trusts it (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`) stands for an attacker
    with a real certificate for their own domain."""
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    cert: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def netloc(self) -> str:
        """`127.0.0.1:PORT`, as a trusted-hosts entry would name it."""
        return self.url.split("://", 1)[1]

    def requests(self) -> list[Seen]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self.seen)

    def carrying(self, *secrets: str) -> list[Seen]:
        """The requests whose headers or body hold any of `secrets`, or any credential
        header at all (`Authorization`, `PRIVATE-TOKEN`, `JOB-TOKEN`, a cookie)."""
        found = []
        for seen in self.requests():
            names = {"authorization", "private-token", "job-token", "cookie"}
            text = json.dumps(seen.headers) + seen.body.decode("latin-1")
            if names & set(seen.headers) or any(s and s in text for s in secrets):
                found.append(seen)
        return found

    def __enter__(self) -> AttackerHost:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with host._lock:
                    host.seen.append(Seen(self.command, self.path, headers, body))
                answer = json.dumps({"message": "Not Found"}).encode()
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _record

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if self.tls:
            folder = Path(tempfile.mkdtemp(prefix="attacker-tls-"))
            self.cert, key = folder / "cert.pem", folder / "key.pem"
            subprocess.run(
                [
                    *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                    *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
                    *("-keyout", str(key), "-out", str(self.cert)),
                ],
                check=True,
                capture_output=True,
            )
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert, key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
