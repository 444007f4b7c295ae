"""Service fixtures: the app over a GitHub-double project, with a projects file on disk."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from service.app import build_state, create_app
from service.deps import ServiceState
from service.settings import ServiceSettings
from tests.conftest import TOKEN, ForgeEnv

READ, WRITE, ADMIN, OTHER = (
    "read-token-0001",
    "write-token-0002",
    "admin-token-0003",
    "other-token-0004",
)
WEBHOOK_SECRET = "It's a Secret to Everybody"
MAX_BYTES = 512 * 1024
"""The tests' service refuses files (and snapshots) over this, so caps are cheap to test."""


@dataclass
class Receiver:
    """A local HTTP endpoint that records deploy-hook POSTs and answers `status`."""

    status: int = 200
    calls: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    record = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                record.calls.append(
                    {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
            self.send_response(record.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.url = f"http://127.0.0.1:{server.server_address[1]}/deploy"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield record
    server.shutdown()
    server.server_close()


def projects_file(
    tmp_path: Path, env: ForgeEnv, receiver_url: str, repo_name: str = "warehouse"
) -> Path:
    location = env.make_config().location
    data = {
        "projects": [
            {
                "name": repo_name,
                "repo": location.web_url if env.kind != "local" else f"file://{env.repo_dir}",
                "provider": env.kind.split("-")[0],
                "api_url": location.api_url if env.kind != "local" else None,
                "token": TOKEN,
                "webhook_secret": WEBHOOK_SECRET,
                "deploy_targets": [
                    {
                        "name": "prod",
                        "branch": "main",
                        "url": receiver_url,
                        "secret": "deploy-secret",
                    },
                    {
                        "name": "dev",
                        "branch": "development",
                        "paths": ["*.yml", "transform/**"],
                        "url": receiver_url,
                    },
                ],
            }
        ],
        "tokens": [
            {"name": "dash", "token": READ, "role": "read"},
            {"name": "runner", "token": WRITE, "role": "write", "projects": [repo_name]},
            {"name": "ops", "token": ADMIN, "role": "admin"},
            {"name": "elsewhere", "token": OTHER, "role": "admin", "projects": ["another"]},
        ],
    }
    path = tmp_path / "projects.yml"
    path.write_text(yaml.safe_dump(data))
    return path


class LiveServer:
    """The app served by uvicorn on a loopback port, in a thread: tests speak real HTTP."""

    def __init__(self, app: FastAPI) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            self.thread.join(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class Service:
    client: httpx.Client
    state: ServiceState
    settings: ServiceSettings
    app: FastAPI

    def get(self, path: str, token: str | None = READ, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return self.client.get(f"/v1/projects/warehouse{path}", headers=headers, **kwargs)

    def post(self, path: str, token: str | None = WRITE, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return self.client.post(f"/v1/projects/warehouse{path}", headers=headers, **kwargs)


@pytest.fixture
def service(env: ForgeEnv, tmp_path: Path, receiver: Receiver) -> Iterator[Service]:
    settings = ServiceSettings(
        projects_file=projects_file(tmp_path, env, receiver.url),
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        cache_dir=tmp_path / "cache",
        outbox_base_delay=0.01,
        outbox_max_attempts=3,
        max_archive_bytes=MAX_BYTES,
        data_dir=tmp_path / "data",
    )
    state = build_state(settings)
    app = create_app(settings, state=state, deliver=False)
    with LiveServer(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield Service(client, state, settings, app)
    state.close()


CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = Path(
    os.environ.get("SCREENSHOT_DIR")
    or Path(__file__).resolve().parents[2] / "build" / "screenshots"
)
"""Where the browser tests keep their pictures: an ignored folder, so `make test` leaves the
tree clean; `make screenshots` points it at docs/screenshots to refresh the README's."""


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, driven by Playwright (CI installs it; Playwright's own browser
    download does not work there). Elsewhere Playwright's own Chromium will do, if present."""
    with sync_playwright() as playwright:
        if CHROMIUM.exists():
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        elif os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: apt-get install chromium")
        else:
            try:
                launched = playwright.chromium.launch(args=BROWSER_ARGS)
            except PlaywrightError:
                pytest.skip(
                    "No Chromium: apt-get install chromium, or python -m playwright install "
                    "chromium"
                )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies, no local storage) and one page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page: Page, service: Service, token: str = WRITE) -> str:
    """Sign in through the sign-in page; the base URL."""
    url = str(service.client.base_url).rstrip("/")
    page.goto(f"{url}/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")
    return url


def type_into_editor(page: Page, text: str) -> None:
    """Replace the web editor's text as a person would: click into the code editor, select
    all, type the new text in (the form's hidden text area follows it)."""
    page.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(text)


def screenshot(page: Page, name: str) -> None:
    """Keep the page's picture (`make screenshots` refreshes the README's)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
