"""Schemathesis against the checked-in openapi.yaml, over HTTP against the app: no 5xx,
and every documented response matches its schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import ForgeEnv
from tests.service.conftest import ADMIN, Service

ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")


@pytest.fixture
def seeded_service(service: Service, env: ForgeEnv) -> Service:
    base = env.seed(
        {"meltano.yml": b"version: 1\nenvironments:\n- name: dev\n", "README.md": b"hi\n"}
    )
    env.forge.create_branch("development", base)
    return service


@pytest.mark.slow
@pytest.mark.parametrize("env", ["github"], indirect=True)
@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_fuzz(case: schemathesis.Case[Any], seeded_service: Service) -> None:
    if case.path.endswith("/events"):
        pytest.skip("an endless stream; covered by its own test")
    if "project" in (case.path_parameters or {}):
        case.path_parameters["project"] = "warehouse"
    case.call_and_validate(
        base_url=str(seeded_service.client.base_url),
        headers={"Authorization": f"Bearer {ADMIN}"},
        checks=[not_a_server_error, response_schema_conformance],
        timeout=30,
    )
