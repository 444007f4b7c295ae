"""Benchmark plumbing: a latency-adding TCP proxy that counts requests and bytes, and a
git smart-HTTP host (`git http-backend`) for the git CLI baseline."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REQUEST_LINE = re.compile(
    rb"(?:^|\r\n\r\n|\n)(GET|POST|PUT|PATCH|DELETE|HEAD) (\S+) HTTP/1\.[01]\r\n"
)


@dataclass
class Traffic:
    """What crossed the proxy since the last reset."""

    requests: list[str] = field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0

    def matching(self, pattern: str) -> int:
        """Requests whose `METHOD path` matches a regex."""
        return sum(1 for r in self.requests if re.search(pattern, r))


class LatencyProxy:
    """127.0.0.1:port -> target, delaying each direction by rtt/2."""

    def __init__(self, target_port: int, rtt: float) -> None:
        self.target_port = target_port
        self.rtt = rtt
        self.traffic = Traffic()
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def reset(self) -> Traffic:
        """Return and clear the counters."""
        with self._lock:
            traffic, self.traffic = self.traffic, Traffic()
        return traffic

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer, up=True), self._pipe(up_reader, writer, up=False)
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        try:
            while data := await reader.read(256 * 1024):
                if self.rtt:
                    await asyncio.sleep(self.rtt / 2)
                with self._lock:
                    if up:
                        self.traffic.bytes_up += len(data)
                        self.traffic.requests += [
                            f"{m.group(1).decode()} {m.group(2).decode()}"
                            for m in REQUEST_LINE.finditer(data)
                        ]
                    else:
                        self.traffic.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


class GitHost:
    """`git http-backend` over HTTP for every bare repository under `root`."""

    def __init__(self, root: Path) -> None:
        backend = subprocess.run(
            ["git", "--exec-path"], capture_output=True, text=True, check=True
        ).stdout.strip()
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                return

            def _cgi(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                env = {
                    **os.environ,
                    "GIT_PROJECT_ROOT": str(root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REMOTE_USER": "bench",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(length),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                }
                result = subprocess.run(
                    [f"{backend}/git-http-backend"],
                    input=body,
                    env=env,
                    capture_output=True,
                    check=False,
                )
                head, _, payload = result.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.split(b"\r\n"):
                    name, _, value = line.decode().partition(": ")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _cgi

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        del host

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
