"""The HTTP API over a GitHub-double project: auth, policy, reads, archive cache."""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import io
import logging
import tarfile
from pathlib import Path

import httpx
import pytest

from service.openapi import document
from tests.conftest import TOKEN, Files, ForgeEnv
from tests.service.conftest import ADMIN, OTHER, READ, WRITE, Service

ROOT = Path(__file__).resolve().parents[2]
on_github = pytest.mark.parametrize("env", ["github"], indirect=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@on_github
def test_tokens_and_scopes(service: Service, env: ForgeEnv) -> None:
    env.seed({"meltano.yml": b"v: 1\n"})
    assert service.get("", token=None).status_code == 401
    unknown = service.get("", token="nope-nope")
    assert unknown.status_code == 401
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.headers["www-authenticate"] == "Bearer"
    assert service.get("", token=OTHER).status_code == 403
    assert service.get("", token=READ).status_code == 200
    refused = service.post("/branches", token=READ, json={"name": "x"})
    assert refused.status_code == 403
    assert "write" in refused.json()["detail"]
    assert service.client.get("/healthz").status_code == 200
    assert service.client.get("/readyz").json() == {"status": "ready"}


@on_github
def test_commit_policy_protected_and_conflicts(service: Service, env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n", "other.txt": b"o\n"})
    env.forge.create_branch("development", base)
    change = {"path": "meltano.yml", "content_base64": b64(b"v: 2\n"), "base_mode": "100644"}
    protected = service.post(
        "/commits", json={"branch": "main", "base_sha": base, "message": "m", "changes": [change]}
    )
    assert protected.status_code == 403
    assert protected.json()["title"] == "Read-only branch"
    assert "development" in protected.json()["detail"]
    ok = service.post(
        "/commits",
        json={"branch": "development", "base_sha": base, "message": "m", "changes": [change]},
    )
    assert ok.status_code == 201, ok.text
    stale = service.post(
        "/commits",
        json={
            "branch": "development",
            "base_sha": base,
            "message": "again",
            "changes": [{**change, "content_base64": b64(b"v: 3\n")}],
        },
    )
    assert stale.status_code == 409
    assert stale.json()["paths"] == ["meltano.yml"]
    assert env.head("development") == ok.json()["sha"]
    assert env.head("main") == base
    bad = service.post(
        "/commits",
        json={
            "branch": "development",
            "base_sha": base,
            "message": "m",
            "changes": [{"path": "../escape", "content_base64": b64(b"x")}],
        },
    )
    assert bad.status_code == 422
    assert env.head("development") == ok.json()["sha"]


@on_github
def test_reads_branches_meltano_and_workspaces(service: Service, env: ForgeEnv) -> None:
    fixtures = ROOT / "tests" / "fixtures" / "meltano" / "meltano-manifest"
    files: Files = {
        str(p.relative_to(fixtures)): p.read_bytes() for p in fixtures.rglob("*") if p.is_file()
    }
    base = env.seed(files)
    created = service.post("/branches", json={"name": "development"})
    assert created.status_code == 201, created.text
    assert created.json()["head"] == base
    clash = service.post("/branches", json={"name": "development/aj"})
    assert clash.status_code == 400
    assert "folder" in clash.json()["detail"]
    names = {b["name"]: b for b in service.get("/branches").json()}
    assert names["main"]["read_only"]
    assert not names["development"]["read_only"]
    tree = {e["path"] for e in service.get("/tree", params={"ref": "main"}).json()}
    assert "environments/prod.meltano.yml" in tree
    assert service.get("/files/meltano.yml", params={"ref": "main"}).content == files["meltano.yml"]
    summary = service.get("/meltano", params={"ref": "main"}).json()
    assert "extractors.meltano.yml" in summary["files"]
    assert {"userdev", "prod"} <= set(summary["environments"])
    assert any(p["name"] == "tap-cloudwatch" for p in summary["plugins"]["extractors"])
    assert summary["schedules"]
    assert summary["jobs"]
    put = service.client.put(
        "/v1/projects/warehouse/workspaces/runner-1",
        headers={"Authorization": f"Bearer {WRITE}"},
        json={"branch": "development", "base_sha": base, "dirty": ["meltano.yml"]},
    )
    assert put.status_code == 200
    service.client.put(
        "/v1/projects/warehouse/workspaces/runner-2",
        headers={"Authorization": f"Bearer {WRITE}"},
        json={"branch": "development", "base_sha": base, "dirty": []},
    )
    dirty = service.get("/workspaces", params={"dirty": "true"}).json()
    assert [w["id"] for w in dirty] == ["runner-1"]


@on_github
def test_archive_is_cached_single_flight_with_etag(service: Service, env: ForgeEnv) -> None:
    assert env.double is not None
    sha = env.seed({f"models/m{i}.sql": f"select {i}\n".encode() for i in range(200)})
    env.clear_log()
    url = "/v1/projects/warehouse/archive"

    def fetch(_: int) -> httpx.Response:
        with httpx.Client(base_url=str(service.client.base_url), timeout=60) as client:
            return client.get(url, params={"ref": sha}, headers={"Authorization": f"Bearer {READ}"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(fetch, range(50)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert env.requests("GET", r"/tarball/") == 1, (
        "50 concurrent requests, one forge archive request"
    )
    assert responses[0].headers["etag"] == f'"{sha}"'
    with tarfile.open(fileobj=io.BytesIO(responses[0].content), mode="r:gz") as tar:
        assert tar.pax_headers["comment"] == sha
        assert len([m for m in tar.getmembers() if m.isfile()]) == 200
    again = service.get("/archive", params={"ref": sha}, headers={"If-None-Match": f'"{sha}"'})
    assert again.status_code == 304
    assert env.requests("GET", r"/tarball/") == 1
    metrics = service.client.get("/metrics").text
    assert 'meltano_forge_archive_requests_total{cache="miss"}' in metrics


@on_github
def test_no_token_in_logs_or_responses(
    service: Service, env: ForgeEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env.seed({"meltano.yml": b"v: 1\n"})
    bodies = [
        service.get("").text,
        service.get("/branches").text,
        _archive_text(service.get("/archive", params={"ref": "main"})),
        service.get("/files/nope.txt", params={"ref": "main"}).text,
        service.get("", token="wrong-token").text,
    ]
    secrets = [TOKEN, READ, WRITE, ADMIN, "deploy-secret", "It's a Secret to Everybody"]
    texts = bodies + [r.getMessage() for r in caplog.records]
    assert not [t for t in texts for s in secrets if s in t]


def _archive_text(response: httpx.Response) -> str:
    """The archive's headers and every byte of its unpacked contents, searchable."""
    assert response.status_code == 200, response.text
    return str(response.headers) + gzip.decompress(response.content).decode("latin-1")


def test_openapi_yaml_is_up_to_date() -> None:
    assert (ROOT / "openapi.yaml").read_text() == document(), (
        "run: python -m service.openapi > openapi.yaml"
    )
