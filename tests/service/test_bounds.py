"""Bounded resources over real HTTP (issue 16, section 4): repository YAML that is an alias
bomb or nests thousands deep is a clear refusal on every surface that reads it, webhook
and form bodies are counted while they stream and refused at their limit, and workspace
ids and branch names over their columns are a 422 on SQLite and PostgreSQL alike.

The peak memory of a served process under each attack is measured in `test_memory_*`
(slow): a `meltano-forge serve` child, its VmHWM read from /proc before and after."""

from __future__ import annotations

import base64
import itertools
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from service.app import build_state, create_app
from service.settings import ServiceSettings
from service.webhooks import github_signature
from tests.conftest import ForgeEnv
from tests.service.conftest import (
    MAX_BYTES,
    READ,
    WEBHOOK_SECRET,
    WRITE,
    LiveServer,
    Receiver,
    Service,
    projects_file,
)

ROOT = Path(__file__).resolve().parents[2]
on_github = pytest.mark.parametrize("env", ["github"], indirect=True)
MIB = 1024**2
FORM_LIMIT = 8 * MIB
"""The default MELTANO_FORGE_FORM_MAX_BYTES."""


def alias_bomb(levels: int = 9) -> bytes:
    """The classic "billion laughs": each level nine aliases of the one before."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnop"[:levels]
    for previous, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    lines.append(f"default_environment: *{names[-1]}")  # the summary returns this one
    return ("\n".join(lines) + "\n").encode()


NESTED = b"[" * 5000 + b"]" * 5000 + b"\n"
"""10 kB of `[[[...]]]`: a RecursionError in any recursive parser or walker."""


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found is not None, text[:500]
    return found.group(1)


@contextmanager
def signed_in(service: Service, token: str = WRITE) -> Iterator[httpx.Client]:
    """A browser-like client signed in through the sign-in form."""
    with httpx.Client(base_url=service.client.base_url, timeout=60) as client:
        answer = client.post(
            "/signin",
            data={"token": token, "csrf": _csrf(client.get("/signin").text)},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        yield client


# --- YAML -------------------------------------------------------------------------------


@on_github
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (alias_bomb(6), "its aliases expand to more than 200,000 values"),
        (NESTED, "it nests deeper than 64 levels"),
    ],
    ids=["alias-bomb", "nested"],
)
def test_hostile_meltano_yml_is_a_clear_refusal_on_every_surface(
    service: Service, env: ForgeEnv, content: bytes, reason: str
) -> None:
    env.seed({"meltano.yml": b"version: 1\n"})
    env.seed({"meltano.yml": content}, branch="development")
    summary = service.get("/meltano", params={"ref": "development"})
    assert summary.status_code == 422, summary.text[:300]
    assert summary.headers["content-type"] == "application/problem+json"
    assert re.match(rf"meltano.yml line \d+ cannot be read: {reason}", summary.json()["detail"])
    assert len(summary.content) < 2000

    with signed_in(service) as browser:
        project = browser.get("/projects/warehouse")
        assert project.status_code == 200, project.text[:300]
        settings = browser.get("/projects/warehouse/settings", params={"branch": "development"})
        assert settings.status_code == 200, settings.text[:300]
        editor = browser.get(
            "/projects/warehouse/edit", params={"branch": "development", "path": "meltano.yml"}
        )
        assert editor.status_code == 200, editor.text[:300]
        check = browser.post(
            "/projects/warehouse/edit/check",
            data={"path": "meltano.yml", "content": content.decode(), "csrf": _csrf(editor.text)},
        )
        assert check.status_code == 200, check.text[:300]
        assert check.json()["ok"] is False
        [refused] = [e for e in check.json()["errors"] if e["file"] == "meltano.yml"]
        assert refused["here"] is True
        assert reason in refused["message"]


@on_github
def test_include_files_are_bounded_together_not_only_one_by_one(
    service: Service, env: ForgeEnv
) -> None:
    part = alias_bomb(5).replace(b"default_environment: *e", b"jobs: [{name: j, tasks: *e}]")
    files: dict[str, bytes] = {f"inc/{i}.yml": part for i in range(2)}  # 141,000 values each
    env.seed({"meltano.yml": b"include_paths: ['inc/*.yml']\n", **files})
    summary = service.get("/meltano", params={"ref": "main"})
    assert summary.status_code == 422, summary.text[:300]
    assert "inc/1.yml cannot be read: with the files read before it" in summary.json()["detail"]
    env.seed({"meltano.yml": b"include_paths: ['inc/*.yml']\n", "inc/0.yml": part}, "one")
    assert len(service.get("/meltano", params={"ref": "one"}).json()["jobs"]) == 1


@on_github
def test_settings_forms_refuse_hostile_yaml_and_commit_nothing(
    service: Service, env: ForgeEnv
) -> None:
    env.seed({"meltano.yml": b"version: 1\n"})
    base = env.seed(
        {"meltano.yml": b"plugins:\n  extractors:\n  - name: tap-x\n"}, branch="development"
    )
    with signed_in(service) as browser:
        form = browser.get("/projects/warehouse/settings", params={"branch": "development"})
        bomb_value = alias_bomb(6).decode().replace("\n", ", ").rstrip(", ")
        answer = browser.post(
            "/projects/warehouse/settings/setting",
            data={
                "branch": "development",
                "csrf": _csrf(form.text),
                "name": "tap-x",
                "field": "start_date",
                "value": "{" + bomb_value + "}",
            },
            follow_redirects=False,
        )
        assert answer.status_code == 200, answer.text[:300]
        assert "its aliases expand to more than 200,000 values" in answer.text
        assert env.head("development") == base

        env.seed({"meltano.yml": NESTED}, branch="development", parent=base)
        nested_head = env.head("development")
        answer = browser.post(
            "/projects/warehouse/settings/environment",
            data={"branch": "development", "csrf": _csrf(form.text), "name": "staging"},
            follow_redirects=False,
        )
        assert answer.status_code == 200, answer.text[:300]
        assert "it nests deeper than 64 levels" in answer.text
        assert env.head("development") == nested_head


# --- bodies -----------------------------------------------------------------------------


def _unfinished_chunked(url: str, path: str, headers: dict[str, str], sent: int) -> bytes:
    """POST a chunked body of `sent` bytes that never ends (no final chunk), then read what
    the server answers: a server that waits for the whole body answers nothing."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Transfer-Encoding: chunked"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"a" * 64 * 1024)
        for _ in range(sent // (64 * 1024)):
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server answered and closed: read what it said
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except TimeoutError:
            pass
        return answer


@on_github
def test_a_chunked_webhook_is_refused_at_the_limit_not_read_whole(service: Service) -> None:
    limit = service.settings.webhook_max_bytes
    answer = _unfinished_chunked(
        str(service.client.base_url),
        "/v1/projects/warehouse/webhooks",
        {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1", "Content-Type": "application/json"},
        4 * limit,
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer


@on_github
def test_a_signed_chunked_webhook_within_the_limit_is_still_accepted(service: Service) -> None:
    raw = (
        ROOT / "tests" / "fixtures" / "webhooks" / "github" / "push-with-new-branch.payload.json"
    ).read_bytes()

    def body() -> Iterator[bytes]:
        for start in range(0, len(raw), 1000):
            yield raw[start : start + 1000]

    answer = service.client.post(
        "/v1/projects/warehouse/webhooks",
        content=body(),
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "d-2",
            "X-Hub-Signature-256": github_signature(WEBHOOK_SECRET, raw),
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code == 202, answer.text


@on_github
def test_forms_over_the_limit_are_refused_before_parsing(service: Service) -> None:
    limit = FORM_LIMIT
    fields = {f"f{i}": "x" * MIB for i in range(limit // MIB + 1)}
    declared = service.client.post("/signin", data={**fields, "token": "t", "csrf": "c"})
    assert declared.status_code == 413, declared.text[:300]
    assert declared.headers["content-type"] == "application/problem+json"
    assert f"Forms are limited to {limit:,} bytes" in declared.json()["detail"]

    multipart = service.client.post(
        "/signin", data={"csrf": "c"}, files={"token": ("t", b"x" * (limit + 1))}
    )
    assert multipart.status_code == 413, multipart.text[:300]

    as_browser = service.client.post(
        "/signin", data={**fields, "token": "t"}, headers={"Accept": "text/html"}
    )
    assert as_browser.status_code == 413
    assert as_browser.headers["content-type"].startswith("text/html")

    unfinished = _unfinished_chunked(
        str(service.client.base_url),
        "/signin",
        {"Content-Type": "application/x-www-form-urlencoded"},
        2 * limit,
    )
    assert unfinished.startswith(b"HTTP/1.1 413"), unfinished[:200]

    with signed_in(service) as browser:  # a form within the limit still works
        assert browser.get("/projects/warehouse").status_code == 200


@on_github
def test_an_unknown_callers_form_on_the_api_is_refused_before_it_is_read(
    service: Service,
) -> None:
    big = {"name": "x" * (FORM_LIMIT + 1)}
    assert service.post("/branches", token=None, data=big).status_code == 401


@on_github
def test_a_form_with_two_content_types_is_refused(service: Service) -> None:
    """A parser believes one Content-Type and the limit another: the request is refused."""
    body = b"&".join(b"f%d=%s" % (i, b"x" * 1024) for i in range(16))
    headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Content-Type", "text/plain"),
    ]
    answer = service.client.post("/signin", content=body, headers=headers)
    assert answer.status_code == 400, answer.text[:300]
    assert "one Content-Type" in answer.json()["detail"]


@on_github
def test_api_bodies_are_bounded_and_a_read_token_sends_none(service: Service) -> None:
    """A read token's write is refused before its body is read; a writer's body over
    MELTANO_FORGE_BODY_MAX_BYTES is a 413 before it is parsed."""
    limit = 64 * 1024
    service.state.settings = service.state.settings.model_copy(update={"body_max_bytes": limit})
    big = {
        "branch": "development",
        "message": "m",
        "changes": [{"path": "x", "content_base64": "QQ" * limit}],
    }
    refused = service.post("/commits", token=READ, json=big)
    assert refused.status_code == 403, refused.text[:300]
    assert "write is needed" in refused.text
    too_big = service.post("/commits", token=WRITE, json=big)
    assert too_big.status_code == 413, too_big.text[:300]
    assert f"Request bodies are limited to {limit:,} bytes" in too_big.json()["detail"]
    unfinished = _unfinished_chunked(
        str(service.client.base_url),
        "/v1/projects/warehouse/commits",
        {"Content-Type": "application/json", "Authorization": f"Bearer {WRITE}"},
        2 * limit,
    )
    assert unfinished.startswith(b"HTTP/1.1 413"), unfinished[:200]


# --- lengths ----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def stored_service(
    request: pytest.FixtureRequest, env: ForgeEnv, tmp_path: Path, receiver: Receiver
) -> Iterator[Service]:
    """The service over SQLite, and over a fresh PostgreSQL database."""
    admin, name = "postgresql://postgres@127.0.0.1:5432/test", f"mf_{uuid.uuid4().hex[:10]}"
    if request.param == "postgresql":
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    else:
        url = f"sqlite:///{tmp_path / 'service.db'}"
    settings = ServiceSettings(
        projects_file=projects_file(tmp_path, env, receiver.url),
        database_url=url,
        cache_dir=tmp_path / "cache",
        max_archive_bytes=MAX_BYTES,
        data_dir=tmp_path / "data",
    )
    state = build_state(settings)
    app = create_app(settings, state=state, deliver=False)
    with LiveServer(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield Service(client, state, settings, app)
    state.close()
    if request.param == "postgresql":
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@on_github
def test_workspace_ids_and_branches_over_their_columns_are_422_on_every_store(
    stored_service: Service, env: ForgeEnv
) -> None:
    service = stored_service
    sha = env.seed({"meltano.yml": b"version: 1\n"})
    report = {"branch": "development", "base_sha": sha, "dirty": []}
    assert service.client.put(
        f"/v1/projects/warehouse/workspaces/{'w' * 128}",
        json=report,
        headers={"Authorization": f"Bearer {WRITE}"},
    ).is_success
    long_id = service.client.put(
        f"/v1/projects/warehouse/workspaces/{'w' * 129}",
        json=report,
        headers={"Authorization": f"Bearer {WRITE}"},
    )
    assert long_id.status_code == 422, long_id.text
    assert "workspace_id" in long_id.json()["detail"]
    long_branch = service.client.put(
        "/v1/projects/warehouse/workspaces/w1",
        json={**report, "branch": "b" * 256},
        headers={"Authorization": f"Bearer {WRITE}"},
    )
    assert long_branch.status_code == 422, long_branch.text
    listed = service.get("/workspaces", token=READ).json()
    assert [w["id"] for w in listed] == ["w" * 128]

    assert service.get(f"/branches/{'b' * 256}").status_code == 422
    assert service.post("/branches", json={"name": "b" * 256}).status_code == 422
    change = {"path": "a.sql", "content_base64": base64.b64encode(b"select 1\n").decode()}
    commit = service.post(
        "/commits",
        json={"branch": "b" * 256, "base_sha": sha, "message": "m", "changes": [change]},
    )
    assert commit.status_code == 422, commit.text
    assert "longer than 255 bytes" in commit.json()["detail"]
    for path, problem in [
        ("a" * 300, "a name in it is longer than 255 bytes"),
        ("/".join(["d"] * 100) + "/f.sql", "it is more than 64 levels deep"),
        ("/".join(["d"] * 2000) + "/f.sql", "it is longer than 1,024 bytes"),
    ]:
        refused = service.post(
            "/commits",
            json={
                "branch": "development",
                "base_sha": sha,
                "message": "m",
                "changes": [{**change, "path": path}],
            },
        )
        assert refused.status_code == 422, refused.text[:300]
        assert problem in refused.json()["detail"]
    assert env.head("development") is None, "nothing was committed"


# --- peak memory ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _peak_mb(pid: int) -> float:
    """The process's high-water resident set (VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    assert found is not None
    return int(found.group(1)) / 1024


@pytest.fixture
def served(env: ForgeEnv, tmp_path: Path, receiver: Receiver) -> Iterator[tuple[str, int]]:
    """`meltano-forge serve` in a child process: its URL and pid."""
    port = _free_port()
    environ = {
        **os.environ,
        "MELTANO_FORGE_PROJECTS_FILE": str(projects_file(tmp_path, env, receiver.url)),
        "MELTANO_FORGE_DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "MELTANO_FORGE_CACHE_DIR": str(tmp_path / "cache"),
        "MELTANO_FORGE_DATA_DIR": str(tmp_path / "data"),
    }
    command = [sys.executable, "-c", "from service.entry import main; main()", "serve"]
    child = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--no-deliver"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert child.poll() is None, "the service did not start"
        assert time.monotonic() < deadline, "the service did not start in 60 s"
        time.sleep(0.1)
    yield url, child.pid
    child.terminate()
    child.wait(10)


GROWTH_MB = 32
"""Peak growth allowed for one hostile request: far below every input's size."""


def _warm(url: str) -> None:
    """One of each kind of request first, so that imports and caches are not counted."""
    auth = {"Authorization": f"Bearer {READ}"}
    httpx.get(f"{url}/v1/projects/warehouse/meltano", headers=auth, timeout=30)
    httpx.post(f"{url}/signin", data={"token": "t", "csrf": "c"}, timeout=30)
    httpx.post(f"{url}/v1/projects/warehouse/webhooks", content=b"{}", timeout=30)


pytestmark_slow = pytest.mark.slow


def _post_streamed(url: str, body: Iterator[bytes], headers: dict[str, str], status: int) -> None:
    """POST a streamed body and expect `status`; a server that answered and closed before
    the whole body was sent is bounded too."""
    try:
        answer = httpx.post(url, content=body, headers=headers, timeout=120)
        assert answer.status_code == status
    except httpx.WriteError:
        pass


@pytestmark_slow
@on_github
def test_memory_an_alias_bomb_on_get_meltano(served: tuple[str, int], env: ForgeEnv) -> None:
    url, pid = served
    env.seed({"meltano.yml": alias_bomb(9)})
    assert len(alias_bomb(9)) < 600
    _warm(url)
    before = _peak_mb(pid)
    answer = httpx.get(
        f"{url}/v1/projects/warehouse/meltano",
        params={"ref": "main"},
        headers={"Authorization": f"Bearer {READ}"},
        timeout=120,
    )
    assert answer.status_code == 422
    assert _peak_mb(pid) - before < GROWTH_MB, f"peak grew {_peak_mb(pid) - before:.0f} MB"


@pytestmark_slow
@on_github
def test_memory_a_200_mb_chunked_webhook(served: tuple[str, int]) -> None:
    url, pid = served
    _warm(url)
    before = _peak_mb(pid)

    def body() -> Iterator[bytes]:
        chunk = b" " * MIB
        for _ in range(200):
            yield chunk

    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    _post_streamed(f"{url}/v1/projects/warehouse/webhooks", body(), headers, 413)
    assert _peak_mb(pid) - before < GROWTH_MB, f"peak grew {_peak_mb(pid) - before:.0f} MB"


@pytestmark_slow
@on_github
def test_memory_a_read_tokens_150_mb_commit(served: tuple[str, int]) -> None:
    """The gate refuses a read token's write before FastAPI reads the JSON whole."""
    url, pid = served
    _warm(url)
    before = _peak_mb(pid)

    def body() -> Iterator[bytes]:
        yield b'{"branch": "development", "message": "m", "changes": '
        yield b'[{"path": "x", "content_base64": "'
        for _ in range(150):
            yield b"Q" * MIB
        yield b'"}]}'

    headers = {"Authorization": f"Bearer {READ}", "Content-Type": "application/json"}
    _post_streamed(f"{url}/v1/projects/warehouse/commits", body(), headers, 403)
    assert _peak_mb(pid) - before < GROWTH_MB, f"peak grew {_peak_mb(pid) - before:.0f} MB"


@pytestmark_slow
@on_github
def test_memory_300_form_fields_of_1_mb_on_signin(served: tuple[str, int]) -> None:
    url, pid = served
    _warm(url)
    before = _peak_mb(pid)

    def body() -> Iterator[bytes]:
        for i in range(300):
            yield f"f{i}=".encode() + b"x" * MIB + b"&"
        yield b"token=t&csrf=c"

    for chunked in (True, False):
        size = sum(len(f"f{i}=") + MIB + 1 for i in range(300)) + len("token=t&csrf=c")
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if not chunked:
            headers["Content-Length"] = str(size)
        _post_streamed(f"{url}/signin", body(), headers, 413)
    assert _peak_mb(pid) - before < GROWTH_MB, f"peak grew {_peak_mb(pid) - before:.0f} MB"
