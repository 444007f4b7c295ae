"""The outbox: retries then dead letter, restart after a kill, and two replicas on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from service import outbox
from service.outbox import OutboxPolicy, OutboxWorker
from service.settings import DeployTarget
from service.storage import deliveries, make_engine, migrate
from service.webhooks import github_signature
from tests.conftest import ForgeEnv
from tests.service.conftest import WEBHOOK_SECRET, Receiver, projects_file

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "tests" / "fixtures" / "webhooks" / "github" / "push-with-new-branch.payload.json"


def statuses(engine: sa.Engine) -> list[tuple[str, int]]:
    with engine.connect() as connection:
        return [
            (r.status, r.attempts)
            for r in connection.execute(sa.select(deliveries).order_by(deliveries.c.id))
        ]


def enqueue_many(engine: sa.Engine, url: str, count: int) -> None:
    target = DeployTarget(name="prod", branch="main", url=url)
    with engine.begin() as connection:
        for i in range(count):
            outbox.enqueue(
                connection, "warehouse", f"event-{i}", [target], {"branch": "main", "n": i}
            )


def test_failing_receiver_gets_retries_then_dead_letter(tmp_path: Path, receiver: Receiver) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'o.db'}")
    migrate(engine)
    receiver.status = 503
    enqueue_many(engine, receiver.url, 1)
    worker = OutboxWorker(engine, {}, OutboxPolicy(max_attempts=3, base_delay=0.01))
    for _ in range(50):
        worker.run_once()
        if statuses(engine)[0][0] != "pending":
            break
        time.sleep(0.02)
    worker.stop()
    assert statuses(engine) == [("dead", 3)]
    assert len(receiver.calls) == 3
    assert len({c["headers"]["idempotency-key"] for c in receiver.calls}) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlowThenFast:
    """A deploy hook that hangs on its first call (so a process can die mid-delivery)."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.first = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.keys.append(self.headers["Idempotency-Key"])
                if not outer.first.is_set():
                    outer.first.set()
                    time.sleep(20)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/deploy"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from service.entry import main; main()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the service did not start")


@pytest.mark.slow
@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_killed_service_redelivers_after_restart_with_the_same_key(
    env: ForgeEnv, tmp_path: Path
) -> None:
    hook = SlowThenFast()
    database = tmp_path / "service.db"
    environ = {
        **os.environ,
        "MELTANO_FORGE_PROJECTS_FILE": str(projects_file(tmp_path, env, hook.url)),
        "MELTANO_FORGE_DATABASE_URL": f"sqlite:///{database}",
        "MELTANO_FORGE_CACHE_DIR": str(tmp_path / "cache"),
        "MELTANO_FORGE_OUTBOX_INTERVAL": "0.1",
        "MELTANO_FORGE_OUTBOX_LEASE_SECONDS": "1",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = serve(environ, port)
    try:
        wait_ready(url)
        data = json.loads(HOOK.read_bytes())
        for i in range(3):
            body = json.dumps({**data, "ref": "refs/heads/main", "after": f"{i:040d}"}).encode()
            response = httpx.post(
                f"{url}/v1/projects/warehouse/webhooks",
                content=body,
                headers={
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": f"kill-{i}",
                    "X-Hub-Signature-256": github_signature(WEBHOOK_SECRET, body),
                },
            )
            assert response.status_code == 202
        assert hook.first.wait(30), "a delivery started"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    engine = make_engine(f"sqlite:///{database}")
    assert any(s == "pending" for s, _ in statuses(engine)), "the kill interrupted a delivery"
    hung_key = hook.keys[0]
    second = serve(environ, port)
    try:
        wait_ready(url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(s != "delivered" for s, _ in statuses(engine)):
            time.sleep(0.2)
    finally:
        second.terminate()
        second.wait(10)
    assert [s for s, _ in statuses(engine)] == ["delivered"] * 3
    assert hook.keys.count(hung_key) == 2, (
        "the interrupted delivery was retried with the same idempotency key"
    )
    assert len(set(hook.keys)) == 3
    engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name = f"mf_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1:5432/test"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


WORKER = """
import sys, time
from service.outbox import OutboxPolicy, OutboxWorker
from service.storage import make_engine
worker = OutboxWorker(make_engine(sys.argv[1]), {}, OutboxPolicy(lease_seconds=120))
idle = 0
while idle < 20:
    idle = 0 if worker.run_once() else idle + 1
    time.sleep(0.01)
worker.stop()
"""


@pytest.mark.slow
def test_two_replicas_on_postgresql_never_deliver_twice(
    postgres_url: str, receiver: Receiver
) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    count = 300
    enqueue_many(engine, receiver.url, count)
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, postgres_url], cwd=ROOT) for _ in range(2)
    ]
    for worker in workers:
        assert worker.wait(120) == 0
    keys = Counter(c["headers"]["idempotency-key"] for c in receiver.calls)
    assert len(keys) == count
    assert max(keys.values()) == 1, "no event was delivered twice"
    assert [s for s, _ in statuses(engine)] == ["delivered"] * count
    engine.dispose()
