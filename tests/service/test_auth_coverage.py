"""Every `/v1` route the app serves, found from the app itself (not listed by hand), with
no token, a wrong token, a role too small, and another project's token."""

from __future__ import annotations

import re

import pytest

from service.settings import Role
from tests.conftest import ForgeEnv
from tests.service.conftest import ADMIN, OTHER, READ, WRITE, Service

TOKENS = {Role.READ: READ, Role.WRITE: WRITE, Role.ADMIN: ADMIN}
BELOW = {Role.WRITE: READ, Role.ADMIN: WRITE}
FILL = {
    "project": "warehouse",
    "name": "main",
    "ref": "main",
    "path": "meltano.yml",
    "workspace_id": "w-1",
    "delivery_id": "1",
    "sha": "0" * 40,
    "job_id": "1",
    "key": "0" * 64,
}


def routes(service: Service) -> list[tuple[str, str, Role | None]]:
    """(method, path, role) for every /v1 operation of the app's own OpenAPI document, the
    role read from its bearer scope; None where the document asks for no token."""
    found = []
    for template, operations in service.app.openapi()["paths"].items():
        if not template.startswith("/v1/"):
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: FILL[m.group(1)], template)
        for method, operation in operations.items():
            scopes = [
                s for requirement in operation.get("security", []) for s in requirement["bearer"]
            ]
            found.append((method.upper(), path, Role[scopes[0].upper()] if scopes else None))
    return found


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_every_route_refuses_the_wrong_callers(service: Service, env: ForgeEnv) -> None:
    env.seed({"meltano.yml": b"v: 1\n"})
    checked = routes(service)
    assert len(checked) >= 14, checked
    for method, path, role in checked:
        if role is None:
            assert path.endswith("/webhooks"), f"{method} {path} has no auth dependency"
            continue
        if path.endswith("/events"):
            continue  # an endless stream; its 401/403 come before the stream starts
        cases = {None: 401, "not-a-known-token": 401}
        if path.startswith("/v1/projects/warehouse"):
            cases[OTHER] = 403
        else:  # a list across projects: another project's token just sees none of these
            seen = service.client.get(path, headers={"Authorization": f"Bearer {OTHER}"})
            assert "warehouse" not in seen.text, (method, path)
        if role in BELOW:
            cases[BELOW[role]] = 403
        for token, status in cases.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            answer = service.client.request(method, path, headers=headers, json={})
            assert answer.status_code == status, (method, path, token, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
        allowed = service.client.request(
            method, path, headers={"Authorization": f"Bearer {TOKENS[role]}"}, json={}
        )
        assert allowed.status_code not in (401, 403), (method, path, allowed.text)


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_the_event_stream_refuses_before_streaming(service: Service, env: ForgeEnv) -> None:
    for token, status in ((None, 401), ("nope", 401), (OTHER, 403)):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = service.client.get("/v1/projects/warehouse/events", headers=headers)
        assert answer.status_code == status
