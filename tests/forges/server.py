"""What both forge doubles share: a threaded HTTP/1.1 server on loopback, a request log,
fault injection, token checks and a store of bare repositories."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dulwich.repo import Repo

from tests.forges import gitdata


@dataclass
class Request:
    """One parsed request, handed to a route."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    role: str = "write"
    """What the presented token may do: 'read', 'write' or 'admin' (see `ForgeDouble.roles`)."""

    def json(self) -> Any:
        """The body as JSON (forms and queries are merged in by GitLab routes)."""
        return json.loads(self.body or b"{}")


@dataclass
class Response:
    """What a route answers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    injected: bool = False
    """True for a fault's answer, which no contract describes."""

    @classmethod
    def json(cls, status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(data).encode(), headers or {})


@dataclass
class Fault:
    """A misbehaviour to inject into matching requests, `times` times."""

    method: str | None = None
    path: str | None = None
    """A regex searched in the request path."""
    status: int | None = None
    """Answer this status instead of running the route."""
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    """Seconds to wait before answering."""
    raw: bytes | None = None
    """With `status`: answer these exact bytes (e.g. a hostile archive) instead of JSON."""
    content_type: str = "application/octet-stream"
    drop_after_apply: bool = False
    """Run the route (so a write lands) and close the connection without answering."""
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        return (self.method is None or self.method == method) and (
            self.path is None or re.search(self.path, path) is not None
        )


@dataclass(frozen=True)
class LogEntry:
    """One request as the double saw it."""

    method: str
    path: str
    query: str
    status: int
    bytes_in: int
    bytes_out: int
    at: float


Route = tuple[str, re.Pattern[str], Callable[[Request], Response]]


class ForgeDouble:
    """Base class: routes, faults, log. Subclasses add the forge's API and error bodies."""

    name = "forge"

    def __init__(
        self, repos_dir: Path, token: str | None = None, host: str = "127.0.0.1", port: int = 0
    ):
        self.repos_dir = Path(repos_dir)
        self.token = token
        self.roles: dict[str, str] = {token: "write"} if token else {}
        """Accepted tokens and what each may do: 'read' (pull only, GitHub's read
        collaborator or GitLab's Reporter), 'write' (push; GitLab's Developer), 'admin'."""
        self.echo_token: bool | str = False
        """When set, error bodies echo the request's Authorization header, as a careless
        proxy might: the client must never print it. `"bare"` echoes the token alone, with
        no header name for a pattern to find."""
        self.routes: list[Route] = []
        self.faults: list[Fault] = []
        self.log: list[LogEntry] = []
        self.validation_errors: list[str] = []
        self._lock = threading.Lock()
        self._repo_locks: dict[str, threading.Lock] = {}
        self._archives: dict[tuple[str, str, str, str], bytes] = {}
        self.server = ThreadingHTTPServer((host, port), self._handler_class())
        self.server.daemon_threads = True
        self.host, self.port = (
            str(self.server.server_address[0]),
            int(self.server.server_address[1]),
        )
        self.url = f"http://{self.host}:{self.port}"
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> ForgeDouble:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> ForgeDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- test controls ---------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        """Queue a fault."""
        with self._lock:
            self.faults.append(fault)

    def clear_log(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self.log.clear()

    def requests(self, method: str | None = None, path: str | None = None) -> list[LogEntry]:
        """Logged requests, optionally filtered by method and a path regex."""
        with self._lock:
            entries = list(self.log)
        return [
            e
            for e in entries
            if (method is None or e.method == method) and (path is None or re.search(path, e.path))
        ]

    # ---- repositories ----------------------------------------------------------------
    def repo_path(self, full_name: str) -> Path:
        """The bare repository behind `owner/name` (or `group/sub/name`)."""
        return self.repos_dir / f"{full_name}.git"

    def create_repo(self, full_name: str, default_branch: str = "main") -> Path:
        """Create an empty bare repository."""
        return gitdata.init_bare(self.repo_path(full_name), default_branch)

    @contextmanager
    def open_repo(self, full_name: str) -> Iterator[Repo | None]:
        """The repository, or None if it does not exist."""
        path = self.repo_path(full_name)
        if not (path / "HEAD").exists():
            yield None
            return
        repo = Repo(str(path))
        try:
            yield repo
        finally:
            repo.close()

    @contextmanager
    def write_lock(self, full_name: str) -> Iterator[None]:
        """Serialise writes to one repository, as a forge does per ref."""
        with self._lock:
            lock = self._repo_locks.setdefault(full_name, threading.Lock())
        with lock:
            yield

    def archive_bytes(self, repo: Repo, sha: str, prefix: str, path: str = "") -> bytes:
        """A commit's tar.gz, built once: GitHub's codeload and GitLab both cache archives
        of a commit, so a benchmark should not pay for rebuilding one per request."""
        key = (str(repo.path), sha, prefix, path)
        with self._lock:
            cached = self._archives.get(key)
        if cached is None:
            cached = gitdata.tarball(repo, sha, prefix, path)
            with self._lock:
                self._archives[key] = cached
                while len(self._archives) > 32:
                    self._archives.pop(next(iter(self._archives)))
        return cached

    # ---- hooks for subclasses --------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Callable[[Request], Response]) -> None:
        """Add a route; `pattern` is a regex with named groups, matched on the full path."""
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def add_token(self, token: str, role: str) -> None:
        """Accept another token with a role ('read', 'write' or 'admin')."""
        self.roles[token] = role

    def presented_token(self, request: Request) -> str | None:
        """The token a request carries, in this forge's header."""
        return None

    def authorized(self, request: Request) -> bool:
        """Whether the request carries an accepted token; sets `request.role`."""
        if not self.roles:
            return True
        role = self.roles.get(self.presented_token(request) or "")
        if role is None:
            return False
        request.role = role
        return True

    def unauthorized(self) -> Response:
        """The forge's 401."""
        return Response.json(401, {"message": "401 Unauthorized"})

    def not_found(self) -> Response:
        """The forge's 404 for an unknown route."""
        return Response.json(404, {"message": "Not Found"})

    def decorate(self, request: Request, response: Response) -> None:
        """Add forge-wide headers (rate limits) to every response."""

    def check(self, request: Request, response: Response) -> None:
        """Validate a request/response pair against a published contract, if any."""

    # ---- dispatch --------------------------------------------------------------------
    def dispatch(self, request: Request) -> tuple[Response | None, bool]:
        """Route a request, applying faults. Returns (response, drop_connection)."""
        fault = self._take_fault(request.method, request.path)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status and fault.raw is not None:
            raw = Response(
                fault.status, fault.raw, dict(fault.headers), fault.content_type, injected=True
            )
            return raw, False
        if fault and fault.status:
            injected = Response.json(
                fault.status, fault.body or {"message": "injected"}, dict(fault.headers)
            )
            injected.injected = True
            return injected, False
        if not self.authorized(request):
            return self.unauthorized(), False
        response = self._route(request)
        if self.echo_token and (response.status >= 400 or b'"errors"' in response.body):
            response.body = self._echoed(request, response.body, self.echo_token == "bare")
        if fault and fault.drop_after_apply:
            return response, True
        return response, False

    @staticmethod
    def _echoed(request: Request, body: bytes, bare: bool = False) -> bytes:
        """The error body with the request's credentials in its message, as a careless
        proxy or a debugging forge might answer."""
        echoed = request.headers.get("authorization") or request.headers.get("private-token", "")
        note = (
            f" (the credential {echoed.rpartition(' ')[2]} was refused)"
            if bare
            else f" (request had Authorization: {echoed})"
        )
        try:
            data = json.loads(body)
        except ValueError:
            return body + note.encode()
        if isinstance(data, dict) and isinstance(data.get("errors"), list):  # GraphQL's 200
            for error in data["errors"]:
                if isinstance(error, dict):
                    error["message"] = f"{error.get('message', '')}{note}"
        elif isinstance(data, dict):
            data["message"] = f"{data.get('message', '')}{note}"
        return json.dumps(data).encode()

    def _route(self, request: Request) -> Response:
        for method, pattern, handler in self.routes:
            if method != request.method:
                continue
            match = pattern.match(request.path)
            if match:
                request.params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                return handler(request)
        return self.not_found()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
                request = Request(
                    self.command,
                    split.path,
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                response, drop = double.dispatch(request)
                assert response is not None
                double.decorate(request, response)
                double.check(request, response)
                with double._lock:
                    double.log.append(
                        LogEntry(
                            request.method,
                            request.path,
                            split.query,
                            response.status,
                            len(body),
                            len(response.body),
                            time.time(),
                        )
                    )
                if drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(response.status)
                if response.body or response.status not in (204, 304):
                    self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        return Handler


def paginate(
    items: list[Any], request: Request, default: int, base_url: str
) -> tuple[list[Any], dict[str, str], int, int]:
    """Slice `items` by `page`/`per_page` (capped at 100); return the page, a Link header,
    the page number and the page count."""
    per_page = min(int(request.query.get("per_page", default) or default), 100)
    page = max(int(request.query.get("page", 1) or 1), 1)
    pages = max((len(items) + per_page - 1) // per_page, 1)
    chunk = items[(page - 1) * per_page : page * per_page]
    links = []
    query = dict(request.query)
    for rel, number in (("next", page + 1), ("last", pages), ("prev", page - 1), ("first", 1)):
        if (rel in ("next", "last") and page < pages) or (rel in ("prev", "first") and page > 1):
            query.update(page=str(number), per_page=str(per_page))
            links.append(f'<{base_url}{request.path}?{urllib.parse.urlencode(query)}>; rel="{rel}"')
    return chunk, ({"Link": ", ".join(links)} if links else {}), page, pages
