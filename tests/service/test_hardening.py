"""The service attacked as an outsider would: every defect found becomes a test over real
HTTP. Wrong-shaped payloads, replays, unauthenticated bodies, leaked paths, unknown routes,
bursts by branch name, concurrent commits, and commits a pull would refuse."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest

from service.storage import deliveries as deliveries_table
from service.webhooks import github_signature
from tests.conftest import TOKEN, ForgeEnv
from tests.service.conftest import ADMIN, MAX_BYTES, WEBHOOK_SECRET, WRITE, Service
from tests.service.test_webhooks import HOOKS, rows

on_github = pytest.mark.parametrize("env", ["github"], indirect=True)
ALL = pytest.mark.parametrize("env", ["local", "github", "gitlab"], indirect=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def signed_post(service: Service, body: bytes, delivery: str) -> Any:
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": github_signature(WEBHOOK_SECRET, body),
        "Content-Type": "application/json",
    }
    return service.client.post("/v1/projects/warehouse/webhooks", content=body, headers=headers)


@on_github
def test_wrong_shaped_webhook_json_is_a_400_problem(service: Service) -> None:
    template = json.loads((HOOKS / "github" / "push-with-new-branch.payload.json").read_bytes())
    for body in (
        b"[1, 2, 3]",
        json.dumps({**template, "commits": "not a list"}).encode(),
        json.dumps({**template, "commits": [{"added": "x.yml"}]}).encode(),
        json.dumps({**template, "ref": {"nested": True}}).encode(),
        b"not json at all",
    ):
        response = signed_post(service, body, f"shape-{hash(body)}")
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["title"] == "Invalid payload"
    assert service.client.get("/healthz").status_code == 200, "the connection survived"


@on_github
def test_a_replayed_signed_body_with_a_new_delivery_id_is_a_duplicate(
    service: Service,
) -> None:
    data = json.loads((HOOKS / "github" / "push-with-new-branch.payload.json").read_bytes())
    body = json.dumps({**data, "ref": "refs/heads/main"}).encode()
    first = signed_post(service, body, "replay-1")
    assert first.json()["status"] == "accepted"
    assert first.json()["deliveries"] == 1
    again = signed_post(service, body, "replay-2-forged")
    assert again.status_code == 202
    assert again.json()["status"] == "duplicate"
    assert len(rows(service, deliveries_table)) == 1


@on_github
def test_no_token_and_a_bad_body_is_401_not_a_schema_lesson(service: Service) -> None:
    for token in (None, "wrong-token-0009"):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = service.client.post(
            "/v1/projects/warehouse/commits", content=b"{not json", headers=headers
        )
        assert response.status_code == 401, response.text
        assert "content" not in response.text.lower()
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_errors_never_show_the_servers_repository_path(service: Service, env: ForgeEnv) -> None:
    env.seed({"meltano.yml": b"v: 1\n"})
    missing = service.get("/files/meltano.yml", params={"ref": "f" * 40})
    assert missing.status_code == 404, missing.text
    assert str(env.repo_dir) not in missing.text
    assert "MELTANO_FORGE_" not in missing.text, "service words, not the CLI's settings"
    for path in ("/v1/projects", "/v1/projects/warehouse"):
        listed = service.client.get(path, headers={"Authorization": f"Bearer {ADMIN}"})
        assert listed.status_code == 200, listed.text
        assert str(env.repo_dir) not in listed.text, "a local repository's path stays hidden"


@on_github
def test_unknown_routes_answer_in_problem_json(service: Service) -> None:
    for path in ("/nope", "/v1/projects/warehouse/nope"):
        response = service.client.get(path, headers={"Authorization": f"Bearer {ADMIN}"})
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 404


@on_github
def test_archives_by_branch_name_ask_the_forge_once_per_burst(
    service: Service, env: ForgeEnv
) -> None:
    env.seed({"meltano.yml": b"v: 1\n"})
    env.clear_log()
    answers = [service.get("/archive", params={"ref": "main"}) for _ in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert len({a.headers["etag"] for a in answers}) == 1
    downloads = env.requests("GET", r"/tarball/|^/_codeload/")
    assert downloads <= 2, "the archive was fetched once"
    assert env.requests() - downloads == 1, "the branch was resolved once for the burst"


@pytest.mark.slow
@on_github
def test_fifty_concurrent_commits_land_without_a_retry_storm(
    service: Service, env: ForgeEnv
) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n"})
    env.forge.create_branch("development", base)
    env.clear_log()
    results: list[int] = []

    def post(n: int) -> None:
        change = {"path": f"models/m{n}.sql", "content_base64": b64(f"select {n}\n".encode())}
        response = service.post(
            "/commits",
            json={
                "branch": "development",
                "base_sha": base,
                "message": f"m{n}",
                "changes": [change],
            },
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == [201] * 50
    assert env.git("rev-list", "--count", f"{base}..development").strip() == "50"
    assert env.requests() <= 50 * 8, f"{env.requests()} forge requests for 50 commits"


@ALL
def test_a_commit_to_a_missing_branch_starts_from_its_base_everywhere(
    service: Service, env: ForgeEnv
) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n", "README.md": b"project\n"})
    change = {"path": "new.sql", "content_base64": b64(b"select 1\n")}
    for branch, given in (("from-main", "main"), ("from-sha", base), ("from-default", None)):
        body: dict[str, Any] = {"branch": branch, "message": "m", "changes": [change]}
        if given:
            body["base_sha"] = given
        response = service.post("/commits", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["parent"] == base
        assert response.json()["rebased"] is False
        files = set(env.git("ls-tree", "-r", "--name-only", branch).split())
        assert files == {"meltano.yml", "README.md", "new.sql"}, "no orphan branch"
    plain = service.post(
        "/commits",
        json={
            "branch": "from-main",
            "message": "again",
            "changes": [{"path": "other.sql", "content_base64": b64(b"select 2\n")}],
        },
    )
    assert plain.status_code == 201, plain.text
    assert plain.json()["rebased"] is False, "no base_sha: a plain commit on the head"


@ALL
def test_the_api_refuses_commits_a_pull_would_refuse(service: Service, env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n", "d/l": b"plain file\n"})
    env.forge.create_branch("development", base)
    bad = [
        [{"path": ".meltano-forge/state.json", "content_base64": b64(b"{}")}],
        [{"path": "escape", "content_base64": b64(b"../../etc/passwd"), "mode": "120000"}],
        [
            {"path": "d/l", "content_base64": b64(b".."), "mode": "120000", "base_mode": "100644"},
            {"path": "d/e/esc", "content_base64": b64(b"../l/.."), "mode": "120000"},
        ],
        [{"path": "big.bin", "content_base64": b64(b"x" * (MAX_BYTES + 1))}],
    ]
    for changes in bad:
        response = service.post(
            "/commits",
            json={"branch": "development", "base_sha": base, "message": "m", "changes": changes},
        )
        assert response.status_code == 422, response.text
        assert response.json()["title"] == "Unsafe input"
    assert env.head("development") == base


@on_github
def test_the_service_masks_a_token_the_forge_echoes(service: Service, env: ForgeEnv) -> None:
    assert env.double is not None
    env.seed({"meltano.yml": b"v: 1\n"})
    env.double.echo_token = True
    try:
        answer = service.get("/files/missing.txt", params={"ref": "main"})
    finally:
        env.double.echo_token = False
    assert answer.status_code == 404
    assert TOKEN not in answer.text
    assert WRITE not in answer.text
