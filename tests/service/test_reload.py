"""A changed projects file is in force at the next request for everything a request
holds: the project's adapter (its repository, its token) and an open event stream."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dulwich.repo import Repo

from tests.conftest import ForgeEnv, seed_repo
from tests.service.conftest import READ, Service

LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)


def _edit(path: Path, change: Any) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


@LOCAL
def test_a_project_pointed_elsewhere_is_read_from_its_new_repository(
    service: Service, env: ForgeEnv, tmp_path: Path
) -> None:
    env.seed({"meltano.yml": b"version: 1\n# the old repository\n"})
    assert b"old repository" in service.get("/files/meltano.yml?ref=main").content
    moved = tmp_path / "moved.git"
    Repo.init_bare(str(moved), mkdir=True).close()
    seed_repo(moved, {"meltano.yml": b"version: 1\n# the new repository\n"})
    assert service.settings.projects_file is not None

    def point_elsewhere(data: dict[str, Any]) -> None:
        data["projects"][0]["repo"] = f"file://{moved}"

    _edit(service.settings.projects_file, point_elsewhere)
    answer = service.get("/files/meltano.yml?ref=main")
    assert answer.status_code == 200, answer.text
    assert b"new repository" in answer.content, "the old adapter is not used any more"


@LOCAL
def test_an_event_stream_ends_when_its_token_is_revoked(service: Service, env: ForgeEnv) -> None:
    env.seed({"meltano.yml": b"version: 1\n"})
    url = f"{str(service.client.base_url).rstrip('/')}/v1/projects/warehouse/events"
    opened, ended, frames = threading.Event(), threading.Event(), []

    def follow() -> None:
        headers = {"Authorization": f"Bearer {READ}"}
        with httpx.stream("GET", url, headers=headers, timeout=30) as stream:
            for line in stream.iter_lines():
                frames.append(line)
                opened.set()
        ended.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert opened.wait(10), "the stream opened"
    assert service.settings.projects_file is not None
    _edit(
        service.settings.projects_file,
        lambda data: data.update(tokens=[t for t in data["tokens"] if t["name"] != "dash"]),
    )
    service.state.events.publish({"type": "branch_moved", "project": "warehouse"})
    assert ended.wait(10), "the revoked token's stream closed"
    assert not any(line.startswith("event:") for line in frames), "no event reached it"
    thread.join(5)
