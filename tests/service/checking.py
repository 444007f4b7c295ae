"""What the check tests share: a service with a public URL, real pull request payloads
pointed at a double's repository, and the statuses and comments read back over the
doubles' own APIs."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from service import checks
from service.app import build_state, create_app
from service.pull_checks import CheckPolicy, CheckWorker
from service.settings import ServiceSettings
from service.webhooks import github_signature
from tests.conftest import TOKEN, ForgeEnv
from tests.service.conftest import MAX_BYTES, WEBHOOK_SECRET, LiveServer, Service, projects_file

HOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
PUBLIC_URL = "https://forge.example.test"

GOOD = b"""\
default_environment: dev
environments:
- name: dev
plugins:
  extractors:
  - name: tap-csv
    namespace: tap_csv
    pip_url: git+https://github.com/MeltanoLabs/tap-csv.git@0123456789abcdef0123456789abcdef01234567
    executable: tap-csv
    config:
      files: data.csv
  loaders:
  - name: target-jsonl
    namespace: target_jsonl
    pip_url: target-jsonl==0.1.4
    executable: target-jsonl
jobs:
- name: load
  tasks:
  - tap-csv target-jsonl
"""
BROKEN = GOOD.replace(b"  - tap-csv target-jsonl", b"  - tap-csv target-missing")


class ManualClock:
    """The check worker's clock, moved by the test (the write budget's window)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock on."""
        self.now += seconds


@dataclass
class Checked:
    """A service on one double's repository, with a worker that runs check jobs."""

    service: Service
    env: ForgeEnv
    clock: ManualClock

    def worker(self, **policy: Any) -> CheckWorker:
        """A check worker on the service's state (fast retries, the test's clock)."""
        settings = {"base_delay": 0.01, "max_attempts": 3, **policy}
        return CheckWorker(self.service.state, CheckPolicy(**settings), clock=self.clock)

    def drain(self, **policy: Any) -> int:
        """Run passes until nothing is due; how many jobs were claimed. The test's clock
        never runs behind real time (webhooks queue jobs at real time)."""
        self.clock.advance(max(0.0, time.time() - self.clock()))
        worker, total = self.worker(**policy), 0
        while claimed := worker.run_once():
            total += claimed
        return total

    # ---- forge side ------------------------------------------------------------------
    @property
    def api(self) -> str:
        assert self.env.double is not None
        return self.env.double.url + ("/api/v3" if self.env.kind == "github" else "/api/v4")

    def _get(self, path: str) -> Any:
        header = (
            {"Authorization": f"token {TOKEN}"}
            if self.env.kind == "github"
            else {"PRIVATE-TOKEN": TOKEN}
        )
        response = httpx.get(self.api + path, headers=header, timeout=10)
        response.raise_for_status()
        return response.json()

    def statuses(self, sha: str) -> list[tuple[str, str, str | None]]:
        """(state, context, target_url) of every status on a commit, newest first, as the
        double's API lists them (GitLab's `failed` read as `failure`)."""
        if self.env.kind == "github":
            listed = self._get(f"/repos/{self.env.double_name}/commits/{sha}/statuses")
            return [(s["state"], s["context"], s["target_url"]) for s in listed]
        project = urllib.parse.quote(self.env.double_name, safe="")
        listed = self._get(f"/projects/{project}/repository/commits/{sha}/statuses?all=true")
        states = {"failed": "failure"}
        found = [(states.get(s["status"], s["status"]), s["name"], s["target_url"]) for s in listed]
        return list(reversed(found))

    def posted(self, sha: str) -> int:
        """Statuses the service sent for a commit (GitLab moves one status along, pending to
        failed, where GitHub lists each)."""
        assert self.env.double is not None
        return len(self.env.double.requests("POST", rf"/statuses/{sha}$"))

    def state(self, sha: str) -> str | None:
        """The newest status of a commit, as the double's API lists it."""
        listed = self.statuses(sha)
        return listed[0][0] if listed else None

    def comments(self, number: int) -> list[dict[str, Any]]:
        """The comments on a PR/MR, oldest first: id and body."""
        if self.env.kind == "github":
            listed = self._get(f"/repos/{self.env.double_name}/issues/{number}/comments")
            return [{"id": c["id"], "body": c["body"]} for c in listed]
        project = urllib.parse.quote(self.env.double_name, safe="")
        listed = self._get(f"/projects/{project}/merge_requests/{number}/notes?sort=asc")
        return [{"id": n["id"], "body": n["body"]} for n in listed if not n.get("system")]

    def content_writes(self) -> int:
        """Content-creating requests the double saw: statuses, comment creates and edits."""
        double = self.env.double
        assert double is not None
        return len(double.requests("POST", r"/statuses/")) + sum(
            len(double.requests(m, p))
            for m, p in (
                ("POST", r"/(issues|merge_requests)/\d+/(comments|notes)$"),
                ("PATCH", r"/issues/comments/\d+$"),
                ("PUT", r"/merge_requests/\d+/notes/\d+$"),
            )
        )

    # ---- webhooks --------------------------------------------------------------------
    def pull_request(
        self, action: str, number: int, head: str, source: str, target: str, delivery: str
    ) -> httpx.Response:
        """A real GitHub `pull_request` (or GitLab `Merge Request Hook`) payload, pointed at
        the double's repository and signed with the project's webhook secret."""
        if self.env.kind == "github":
            data = json.loads(
                (HOOKS / "github" / f"pull_request-{action}.payload.json").read_text()
            )
            data["number"] = number
            pull = data["pull_request"]
            pull["number"] = number
            pull["head"].update(ref=source, sha=head)
            pull["base"].update(ref=target)
            data["repository"]["full_name"] = self.env.double_name
            return self.github("pull_request", data, delivery)
        data = json.loads((HOOKS / "gitlab" / "merge_request.payload.json").read_text())
        attributes = data["object_attributes"]
        gitlab_action = {"opened": "open", "synchronize": "update", "reopened": "reopen"}[action]
        attributes.update(
            iid=number,
            action=gitlab_action,
            source_branch=source,
            target_branch=target,
            last_commit={**attributes.get("last_commit", {}), "id": head},
        )
        if gitlab_action == "update":
            attributes["oldrev"] = "1" * 40
        else:
            attributes.pop("oldrev", None)
        return self.gitlab("Merge Request Hook", data, delivery)

    def push(self, branch: str, before: str, after: str, delivery: str) -> httpx.Response:
        """A real push payload moved to the double's branch."""
        if self.env.kind == "github":
            data = json.loads((HOOKS / "github" / "push-with-new-branch.payload.json").read_text())
            data.update(ref=f"refs/heads/{branch}", before=before, after=after, forced=False)
            return self.github("push", data, delivery)
        data = json.loads((HOOKS / "gitlab" / "push.payload.json").read_text())
        data.update(ref=f"refs/heads/{branch}", before=before, after=after)
        return self.gitlab("Push Hook", data, delivery)

    def github(self, event: str, data: Any, delivery: str) -> httpx.Response:
        body = json.dumps(data).encode()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": github_signature(WEBHOOK_SECRET, body),
            "Content-Type": "application/json",
        }
        return self.service.client.post(
            "/v1/projects/warehouse/webhooks", content=body, headers=headers
        )

    def gitlab(self, event: str, data: Any, delivery: str) -> httpx.Response:
        body = json.dumps(data).encode()
        headers = {
            "X-Gitlab-Event": event,
            "X-Gitlab-Token": WEBHOOK_SECRET,
            "X-Gitlab-Event-UUID": delivery,
            "Idempotency-Key": delivery,
            "Content-Type": "application/json",
        }
        return self.service.client.post(
            "/v1/projects/warehouse/webhooks", content=body, headers=headers
        )


def checked_projects_file(
    tmp_path: Path, env: ForgeEnv, receiver_url: str, token: str = TOKEN
) -> Path:
    """The service tests' projects file, with the project's forge token replaced."""
    path = projects_file(tmp_path, env, receiver_url)
    data = yaml.safe_load(path.read_text())
    data["projects"][0]["token"] = token
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def checked_service(
    env: ForgeEnv, tmp_path: Path, receiver_url: str, token: str = TOKEN, **settings: Any
) -> Iterator[Checked]:
    """The app over `env` with a public URL; no background workers (tests drive them)."""
    configured = ServiceSettings(
        projects_file=checked_projects_file(tmp_path, env, receiver_url, token),
        database_url=settings.pop("database_url", f"sqlite:///{tmp_path / 'service.db'}"),
        cache_dir=tmp_path / "cache",
        outbox_base_delay=0.01,
        outbox_max_attempts=3,
        max_archive_bytes=MAX_BYTES,
        data_dir=tmp_path / "data",
        public_url=PUBLIC_URL,
        **settings,
    )
    checks.forget()  # a commit seeded alike in another test's repository has the same SHA
    state = build_state(configured)
    app = create_app(configured, state=state, deliver=False)
    with LiveServer(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield Checked(Service(client, state, configured, app), env, ManualClock(time.time()))
    state.close()
