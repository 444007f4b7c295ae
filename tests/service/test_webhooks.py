"""Real GitHub and GitLab payloads, verified signatures, dedupe and redeploy deliveries."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from service.outbox import OutboxWorker
from service.redeploys import accept, process_pending
from service.storage import deliveries, webhook_events
from service.webhooks import github_signature, parse
from tests.conftest import ForgeEnv
from tests.service.conftest import WEBHOOK_SECRET, Receiver, Service

HOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
on_github = pytest.mark.parametrize("env", ["github"], indirect=True)


def github_hook(
    service: Service,
    name: str,
    delivery: str,
    *,
    secret: str = WEBHOOK_SECRET,
    event: str = "push",
    body: bytes | None = None,
) -> httpx.Response:
    raw = body if body is not None else (HOOKS / "github" / name).read_bytes()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": github_signature(secret, raw),
        "Content-Type": "application/json",
    }
    return service.client.post("/v1/projects/warehouse/webhooks", content=raw, headers=headers)


def gitlab_hook(
    service: Service, name: str, uuid: str, token: str = WEBHOOK_SECRET, event: str = "Push Hook"
) -> httpx.Response:
    raw = (HOOKS / "gitlab" / name).read_bytes()
    headers = {
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Event-UUID": uuid,
        "Idempotency-Key": uuid,
        "Content-Type": "application/json",
    }
    return service.client.post("/v1/projects/warehouse/webhooks", content=raw, headers=headers)


def rows(service: Service, table: sa.Table) -> list[sa.Row[object]]:
    with service.state.engine.connect() as connection:
        return list(connection.execute(sa.select(table)).all())


def test_github_published_test_vector() -> None:
    assert github_signature("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


@on_github
def test_branch_push_on_a_watched_branch_is_delivered(service: Service, receiver: Receiver) -> None:
    response = github_hook(service, "push-with-new-branch.payload.json", "d-1")
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "deliveries": 0}
    # the fixture pushes `master`; watch it and replay as a new delivery
    data = json.loads((HOOKS / "github" / "push-with-new-branch.payload.json").read_bytes())
    data["ref"] = "refs/heads/main"
    accepted = github_hook(service, "", "d-2", body=json.dumps(data).encode())
    assert accepted.json() == {"status": "accepted", "deliveries": 1}
    worker = OutboxWorker(service.state.engine, {("warehouse", "prod"): "deploy-secret"})
    assert worker.run_once() == 1
    worker.stop()
    assert len(receiver.calls) == 1
    call = receiver.calls[0]
    payload = json.loads(call["body"])
    assert (payload["branch"], payload["sha"], payload["target"]) == ("main", data["after"], "prod")
    assert (
        call["headers"]["x-meltano-forge-signature"]
        == "sha256=" + __import__("hmac").new(b"deploy-secret", call["body"], "sha256").hexdigest()
    )
    assert call["headers"]["idempotency-key"]
    assert [r.status for r in rows(service, deliveries)] == ["delivered"]


@on_github
def test_tag_deletion_and_unwatched_branches_get_no_delivery(service: Service) -> None:
    for name, delivery in (("push-payload.json", "t-1"), ("push-1.payload.json", "t-2")):
        response = github_hook(service, name, delivery)
        assert response.status_code == 202
        assert response.json()["deliveries"] == 0
    assert gitlab_hook(service, "push.payload.json", "g-1").json()["deliveries"] == 0
    assert (
        gitlab_hook(service, "tag-push.payload.json", "g-2", event="Tag Push Hook").json()[
            "deliveries"
        ]
        == 0
    )
    assert rows(service, deliveries) == []
    assert len(rows(service, webhook_events)) == 4


@on_github
def test_unknown_events_are_acknowledged_and_ignored(service: Service) -> None:
    response = github_hook(service, "ping-payload.json", "p-1", event="ping")
    assert response.status_code == 202
    assert response.json() == {"status": "ignored"}


@on_github
def test_bad_signatures_and_oversized_bodies_record_nothing(service: Service) -> None:
    assert (
        github_hook(service, "push-with-new-branch.payload.json", "x-1", secret="wrong").status_code
        == 401
    )
    raw = (HOOKS / "github" / "push-with-new-branch.payload.json").read_bytes()
    missing = service.client.post(
        "/v1/projects/warehouse/webhooks",
        content=raw,
        headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": "x-2"},
    )
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert gitlab_hook(service, "push.payload.json", "x-3", token="wrong").status_code == 401
    big = b"{" + b" " * (service.settings.webhook_max_bytes + 1) + b"}"
    assert github_hook(service, "", "x-4", body=big).status_code == 413
    assert rows(service, webhook_events) == []
    assert rows(service, deliveries) == []


@on_github
def test_replayed_delivery_is_acknowledged_once(service: Service) -> None:
    data = json.loads((HOOKS / "github" / "push-with-new-branch.payload.json").read_bytes())
    data["ref"] = "refs/heads/main"
    body = json.dumps(data).encode()
    first = github_hook(service, "", "same-id", body=body)
    again = github_hook(service, "", "same-id", body=body)
    assert first.json() == {"status": "accepted", "deliveries": 1}
    assert again.json() == {"status": "duplicate", "deliveries": 0}
    assert len(rows(service, deliveries)) == 1


@on_github
def test_path_globs_and_forge_lookup_for_unknown_paths(service: Service, env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n", "docs/readme.md": b"x\n"})
    docs = env.seed({"docs/readme.md": b"y\n"}, parent=base)
    yml = env.seed({"meltano.yml": b"v: 2\n"}, parent=docs)
    template = json.loads((HOOKS / "github" / "push-with-new-branch.payload.json").read_bytes())
    for delivery, before, after in (("pg-1", base, docs), ("pg-2", docs, yml)):
        # 2,048 commits: GitHub truncated the list, so the service asks the forge, after answering
        data = {
            **template,
            "ref": "refs/heads/development",
            "before": before,
            "after": after,
            "commits": [{"id": after}] * 2048,
        }
        response = github_hook(service, "", delivery, body=json.dumps(data).encode())
        assert response.json() == {"status": "accepted", "deliveries": None}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        r.processed_at is None for r in rows(service, webhook_events)
    ):
        time.sleep(0.05)
    delivered = [json.loads(r.payload)["sha"] for r in rows(service, deliveries)]
    assert delivered == [yml], "only the push that touched *.yml redeploys the dev target"
    assert env.requests("GET", r"/compare/") == 2


@on_github
def test_pushes_left_unprocessed_by_a_crash_are_finished_by_the_worker(service: Service) -> None:
    data = json.loads((HOOKS / "github" / "push-with-new-branch.payload.json").read_bytes())
    data["ref"] = "refs/heads/main"
    body = json.dumps(data).encode()
    headers = {"x-github-event": "push", "x-github-delivery": "crash-1"}
    push = parse("github", headers, body)
    assert push is not None
    project = service.state.projects.project("warehouse")
    assert project is not None
    assert accept(service.state.engine, project, push)  # stored, then the process "died"
    assert rows(service, deliveries) == []
    worker = OutboxWorker(
        service.state.engine,
        {},
        before_pass=lambda: process_pending(
            service.state.engine, service.state.projects, service.state.forge, delay=0
        ),
    )
    worker.run_once()
    worker.stop()
    assert [r.target for r in rows(service, deliveries)] == ["prod"]
    assert all(r.processed_at is not None for r in rows(service, webhook_events))


@on_github
def test_long_lived_runners_hear_about_pushes_over_sse(service: Service) -> None:
    import threading

    lines: list[str] = []
    ready = threading.Event()

    def listen() -> None:
        with (
            httpx.Client(base_url=str(service.client.base_url), timeout=30) as client,
            client.stream(
                "GET",
                "/v1/projects/warehouse/events",
                headers={"Authorization": "Bearer read-token-0001"},
            ) as response,
        ):
            for line in response.iter_lines():
                if line.startswith(": connected"):
                    ready.set()
                lines.append(line)
                if line.startswith("data:"):
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(10)
    data = json.loads((HOOKS / "github" / "push-with-new-branch.payload.json").read_bytes())
    data["ref"] = "refs/heads/development"
    github_hook(service, "", "sse-1", body=json.dumps(data).encode())
    thread.join(10)
    assert "event: branch_moved" in lines
    event = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
    assert (event["branch"], event["sha"]) == ("development", data["after"])


def test_gitlab_signing_token_form() -> None:
    import base64
    import hashlib
    import hmac

    from pydantic import SecretStr

    from service.webhooks import BadSignature, verify_gitlab

    body = b'{"object_kind": "push"}'
    key = b"0123456789abcdef0123456789abcdef"
    token = SecretStr("whsec_" + base64.b64encode(key).decode())
    signed = b"msg_1.1700000000." + body
    good = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": good}
    now = 1700000000.0
    verify_gitlab(headers, body, None, token, now=now)
    verify_gitlab(headers, body, None, token, now=now + 299)
    with pytest.raises(BadSignature, match="webhook-signature does not match"):
        verify_gitlab({**headers, "webhook-signature": "v1,AAAA"}, body, None, token, now=now)
    with pytest.raises(BadSignature):
        verify_gitlab({**headers, "webhook-timestamp": "1700000001"}, body, None, token, now=now)
    with pytest.raises(BadSignature, match="more than 5 minutes"):
        verify_gitlab(headers, body, None, token, now=now + 301)
    with pytest.raises(BadSignature, match="more than 5 minutes"):
        verify_gitlab(headers, body, None, token)  # a captured delivery, replayed today
