"""Schemathesis against the checked-in openapi.yaml, over HTTP against the app: every
operation (webhooks signed as a forge would sign them, the event stream opened and
closed), valid and invalid data, no 5xx, and every documented response matches its schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from service.webhooks import github_signature
from tests.conftest import ForgeEnv
from tests.service.conftest import ADMIN, WEBHOOK_SECRET, Service

ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def seeded_service(service: Service, env: ForgeEnv) -> Service:
    base = env.seed(
        {"meltano.yml": b"version: 1\nenvironments:\n- name: dev\n", "README.md": b"hi\n"}
    )
    env.forge.create_branch("development", base)
    return service


def _signed_webhook(case: schemathesis.Case[Any], url: str) -> httpx.Response:
    """A forge signs the exact bytes it sends: sign the generated body, whatever its shape."""
    given = case.body if isinstance(case.body, (dict, list, str, int, float, bool)) else None
    body = json.dumps(given).encode() if given is not None else b""
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": f"fuzz-{hash(body)}",
        "X-Hub-Signature-256": github_signature(WEBHOOK_SECRET, body),
        "Content-Type": "application/json",
    }
    return httpx.post(f"{url}/v1/projects/warehouse/webhooks", content=body, headers=headers)


@pytest.mark.slow
@pytest.mark.parametrize("env", ["github"], indirect=True)
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_fuzz(case: schemathesis.Case[Any], seeded_service: Service) -> None:
    if "project" in (case.path_parameters or {}):
        case.path_parameters["project"] = "warehouse"
    url = str(seeded_service.client.base_url).rstrip("/")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    if case.path.endswith("/webhooks"):
        response = _signed_webhook(case, url)
        assert response.status_code < 500, response.text
        case.validate_response(response, checks=CHECKS)
        return
    if case.path.endswith("/events"):
        with httpx.stream(
            "GET", f"{url}/v1/projects/warehouse/events", headers=headers, timeout=10
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert next(stream.iter_text()).startswith(": connected")
        return
    case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=30)
