"""Two replicas of the check worker on one PostgreSQL database: every job is reported once,
and the token's write budget holds across both."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from service import check_jobs
from tests.conftest import ForgeEnv
from tests.service.checking import GOOD, checked_service
from tests.service.conftest import Receiver

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import sys, time
from service.app import build_state
from service.forge_writes import WriteBudget
from service.pull_checks import CheckPolicy, CheckWorker
from service.settings import ServiceSettings
projects, database, folder = sys.argv[1:4]
settings = ServiceSettings(
    projects_file=projects, database_url=database, cache_dir=folder + "/cache-" + sys.argv[4],
    data_dir=folder + "/data", public_url="https://forge.example.test",
)
state = build_state(settings)
policy = CheckPolicy(lease_seconds=120, budget=WriteBudget(per_window=45, window=3600))
worker = CheckWorker(state, policy)
idle = 0
while idle < 20:
    idle = 0 if worker.run_once(limit=1) else idle + 1
    time.sleep(0.01)
state.close()
"""


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name = f"mf_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1:5432/test"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.slow
@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_two_replicas_report_each_pull_request_once_within_one_budget(
    env: ForgeEnv, tmp_path: Path, receiver: Receiver, postgres_url: str
) -> None:
    with checked_service(env, tmp_path, receiver.url, database_url=postgres_url) as checked:
        base = env.seed({"meltano.yml": GOOD}, branch="main")
        pulls = []
        for i in range(20):
            branch = f"topic-{i}"
            env.forge.create_branch(branch, base)
            head = env.seed({"notes.txt": f"{i}".encode()}, branch=branch, parent=base)
            number = env.forge.open_change_request(branch, "main", branch, "").number
            answer = checked.pull_request("opened", number, head, branch, "main", f"rep-{i}")
            assert answer.json()["checks"] == 1
            pulls.append((head, number))
        env.clear_log()
        projects = str(tmp_path / "projects.yml")
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, projects, postgres_url, str(tmp_path), str(n)],
                cwd=ROOT,
            )
            for n in range(2)
        ]
        for worker in workers:
            assert worker.wait(180) == 0
        with checked.service.state.engine.connect() as connection:
            states = [
                r.status for r in connection.execute(sa.select(check_jobs.check_jobs.c.status))
            ]
        assert sorted(states) == ["done"] * 15 + ["pending"] * 5, "the budget of 45 writes"
        assert checked.content_writes() == 45
        reported = [(h, n) for h, n in pulls if checked.statuses(h)]
        assert len(reported) == 15
        for head, number in reported:
            assert [s[0] for s in checked.statuses(head)] == ["success", "pending"]
            assert len(checked.comments(number)) == 1
