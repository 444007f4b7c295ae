"""Checks of pull/merge requests and pushes, end to end: real webhook payloads over HTTP,
the check worker, and the statuses and the one comment read back from the doubles."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from service import check_jobs, redeploys, webhooks
from service.check_comment import MARKER
from service.storage import webhook_events
from service.webhooks import github_signature
from tests.conftest import Files, ForgeEnv
from tests.forges.github import GitHubDouble
from tests.forges.gitlab import GitLabDouble
from tests.forges.server import Fault
from tests.service.checking import BROKEN, GOOD, PUBLIC_URL, Checked, checked_service
from tests.service.conftest import ADMIN, READ, WEBHOOK_SECRET, WRITE, Receiver

on_doubles = pytest.mark.parametrize("env", ["github", "gitlab"], indirect=True)


@pytest.fixture
def checked(env: ForgeEnv, tmp_path: Path, receiver: Receiver) -> Iterator[Checked]:
    with checked_service(env, tmp_path, receiver.url) as made:
        yield made


def jobs(checked: Checked) -> list[tuple[str, str, str]]:
    with checked.service.state.engine.connect() as connection:
        rows = connection.execute(sa.select(check_jobs.check_jobs).order_by("id")).all()
    return [(r.subject, r.head_sha, r.status) for r in rows]


def open_pull(env: ForgeEnv, files: Files, branch: str = "feature") -> tuple[str, int]:
    """`main` with GOOD, `branch` with `files` on top, and a PR/MR from it: (head, number)."""
    base = env.head("main") or env.seed({"meltano.yml": GOOD}, branch="main")
    env.forge.create_branch(branch, base)
    head = env.seed(files, branch=branch, parent=base, message=f"change on {branch}")
    made = env.forge.open_change_request(branch, "main", f"Change {branch}", "")
    return head, made.number


@on_doubles
def test_a_pull_request_gets_pending_then_its_result_and_one_comment_edited_in_place(
    checked: Checked, env: ForgeEnv
) -> None:
    head, number = open_pull(env, {"meltano.yml": BROKEN})
    opened = checked.pull_request("opened", number, head, "feature", "main", "pr-1")
    assert opened.status_code == 202
    assert opened.json() == {"status": "accepted", "checks": 1}
    assert env.double is not None
    # The first attempt cannot read the commit's tree: the pending status shows meanwhile.
    env.double.inject(Fault("GET", r"/(git/trees|repository/tree)", status=404))
    assert checked.drain() == 1
    url = f"{PUBLIC_URL}/projects/warehouse/checks/{head}"
    context = "meltano-forge/check"
    assert checked.statuses(head) == [("pending", context, url)]
    assert checked.comments(number) == []
    checked.clock.advance(60)
    assert checked.drain() == 1
    assert checked.statuses(head)[0] == ("failure", context, url)
    [comment] = checked.comments(number)
    assert comment["body"].startswith(MARKER)
    assert "failed" in comment["body"]
    assert "target\\-missing" in comment["body"]  # the finding, escaped

    fixed = env.seed({"meltano.yml": GOOD}, branch="feature", parent=head, message="fix")
    pushed = checked.pull_request("synchronize", number, fixed, "feature", "main", "pr-2")
    assert pushed.json() == {"status": "accepted", "checks": 1}
    assert checked.drain() == 1
    assert checked.statuses(fixed)[0] == (
        "success",
        context,
        f"{PUBLIC_URL}/projects/warehouse/checks/{fixed}",
    )
    assert checked.posted(fixed) == 2, "pending, then success"
    [edited] = checked.comments(number)
    assert edited["id"] == comment["id"], "the one comment is edited in place"
    assert "passed" in edited["body"]
    assert fixed[:12] in edited["body"]

    stored = checked.service.get(f"/checks/{fixed}", token=READ)
    assert stored.status_code == 200
    assert (stored.json()["ok"], stored.json()["number"]) == (True, number)
    assert checked.service.get(f"/checks/{head}", token=READ).json()["ok"] is False


@on_doubles
def test_two_pushes_queued_only_the_newest_head_is_checked_and_posted(
    checked: Checked, env: ForgeEnv
) -> None:
    first, number = open_pull(env, {"meltano.yml": BROKEN})
    second = env.seed({"meltano.yml": GOOD}, branch="feature", parent=first, message="again")
    assert checked.pull_request("opened", number, first, "feature", "main", "c-1").json() == {
        "status": "accepted",
        "checks": 1,
    }
    again = checked.pull_request("synchronize", number, second, "feature", "main", "c-2")
    assert again.json()["checks"] == 1
    assert checked.drain() == 1
    assert (checked.statuses(first), checked.posted(first)) == ([], 0)
    assert (checked.state(second), checked.posted(second)) == ("success", 2)
    assert len(checked.comments(number)) == 1
    key = f"change_request:{number}"
    assert jobs(checked) == [(key, first, "superseded"), (key, second, "done")]


@on_doubles
def test_a_job_whose_head_moved_hands_over_to_the_forges_head(
    checked: Checked, env: ForgeEnv
) -> None:
    first, number = open_pull(env, {"meltano.yml": BROKEN})
    assert (
        checked.pull_request("opened", number, first, "feature", "main", "m-1").status_code == 202
    )
    # pushed before the worker ran, and its webhook is not here yet
    second = env.seed({"meltano.yml": GOOD}, branch="feature", parent=first, message="again")
    assert checked.drain() == 2
    assert (checked.statuses(first), checked.posted(first)) == ([], 0)
    assert (checked.state(second), checked.posted(second)) == ("success", 2)
    key = f"change_request:{number}"
    assert jobs(checked) == [(key, first, "superseded"), (key, second, "done")]


@on_doubles
def test_a_replayed_delivery_changes_nothing(checked: Checked, env: ForgeEnv) -> None:
    head, number = open_pull(env, {"meltano.yml": GOOD})
    assert (
        checked.pull_request("opened", number, head, "feature", "main", "r-1").json()["checks"] == 1
    )
    assert checked.drain() == 1
    before = (checked.statuses(head), checked.comments(number), jobs(checked))
    again = checked.pull_request("opened", number, head, "feature", "main", "r-1")
    assert again.json() == {"status": "duplicate", "checks": 0}
    # the same signed body under a new delivery id is a replay too
    replayed = checked.pull_request("opened", number, head, "feature", "main", "r-2")
    assert replayed.json() == {"status": "duplicate", "checks": 0}
    assert checked.drain() == 0
    assert (checked.statuses(head), checked.comments(number), jobs(checked)) == before


@on_doubles
def test_pushes_to_the_working_and_protected_branches_get_a_status_and_no_comment(
    checked: Checked, env: ForgeEnv
) -> None:
    base = env.seed({"meltano.yml": GOOD}, branch="main")
    for branch in ("development", "topic"):
        env.forge.create_branch(branch, base)
    head = env.seed({"meltano.yml": BROKEN}, branch="development", parent=base)
    assert checked.push("development", base, head, "push-1").status_code == 202
    elsewhere = env.seed({"meltano.yml": BROKEN}, branch="topic", parent=base, message="topic")
    assert checked.push("topic", base, elsewhere, "push-2").status_code == 202
    merged = env.seed({"README.md": b"# merged\n"}, branch="main", parent=base, message="merge")
    assert checked.push("main", base, merged, "push-3").status_code == 202
    assert checked.drain() == 2, "only the working and protected branches are checked"
    assert (checked.state(head), checked.posted(head)) == ("failure", 2)
    assert (checked.state(merged), checked.posted(merged)) == ("success", 2)
    assert (checked.statuses(elsewhere), checked.posted(elsewhere)) == ([], 0)
    assert sorted(jobs(checked)) == [
        ("branch:development", head, "done"),
        ("branch:main", merged, "done"),
    ]


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_a_stored_event_left_unprocessed_is_queued_by_the_recovery_pass(
    checked: Checked, env: ForgeEnv
) -> None:
    head, number = open_pull(env, {"meltano.yml": GOOD})
    event = webhooks.ChangeRequestEvent(
        "github", "github:crashed-1", "pull_request", "opened", number, head, "feature", "main"
    )
    state = checked.service.state
    config = state.projects.projects[0]
    assert redeploys.accept(state.engine, config, event)  # stored, then the process died
    assert jobs(checked) == []
    assert redeploys.process_pending(state.engine, state.projects, state.forge, delay=0) == 1
    assert jobs(checked) == [(f"change_request:{number}", head, "pending")]
    assert checked.drain() == 1
    assert checked.state(head) == "success"


@on_doubles
def test_closed_and_unrelated_actions_are_ignored(checked: Checked, env: ForgeEnv) -> None:
    if env.kind == "github":
        data = json.loads(
            (
                Path(__file__).parents[1]
                / "fixtures/webhooks/github/pull_request-closed.payload.json"
            ).read_text()
        )
        answer = checked.github("pull_request", data, "closed-1")
    else:
        data = json.loads(
            (
                Path(__file__).parents[1] / "fixtures/webhooks/gitlab/merge_request.payload.json"
            ).read_text()
        )
        data["object_attributes"]["action"] = "close"
        answer = checked.gitlab("Merge Request Hook", data, "closed-1")
    assert answer.json() == {"status": "ignored"}
    assert jobs(checked) == []


@on_doubles
def test_a_token_that_may_not_post_statuses_ends_in_a_clear_dead_letter(
    env: ForgeEnv, tmp_path: Path, receiver: Receiver
) -> None:
    token = "limited-token-0005"
    if isinstance(env.double, GitHubDouble):
        env.double.fine_grained(token, contents="write", pull_requests="write")
        needs = 'the "Commit statuses: write" repository permission'
    else:
        assert isinstance(env.double, GitLabDouble)
        env.double.scoped(token, "write", "read_api")
        needs = "the api scope"
    with checked_service(env, tmp_path, receiver.url, token=token) as checked:
        head, number = open_pull(env, {"meltano.yml": GOOD})
        assert (
            checked.pull_request("opened", number, head, "feature", "main", "d-1").json()["checks"]
            == 1
        )
        assert checked.drain() == 1
        listed = checked.service.get("/check-jobs", token=READ)
        assert listed.status_code == 200
        [job] = listed.json()
        assert (job["status"], job["attempts"]) == ("dead", 1)
        assert needs in job["last_error"], job["last_error"]
        assert job["last_error"].endswith(".")
        assert token not in job["last_error"]
        assert (checked.statuses(head), checked.comments(number)) == ([], [])
        assert checked.drain() == 0, "a dead job is not tried again"

        # the permission granted, an admin gives the dead job another round
        if isinstance(env.double, GitHubDouble):
            env.double.fine_grained(
                token, contents="write", pull_requests="write", statuses="write"
            )
        else:
            assert isinstance(env.double, GitLabDouble)
            env.double.scoped(token, "write", "api")
        retry = f"/check-jobs/{job['id']}/retry"
        assert checked.service.post(retry, token=WRITE).status_code == 403
        assert checked.service.post(retry, token=ADMIN).status_code == 202
        assert checked.service.post(retry, token=ADMIN).status_code == 404, "no longer dead"
        assert checked.drain() == 1
        assert (checked.state(head), len(checked.comments(number))) == ("success", 1)


@on_doubles
def test_content_creating_requests_stay_within_80_a_minute_per_token(
    checked: Checked, env: ForgeEnv
) -> None:
    pulls = [
        open_pull(env, {"meltano.yml": GOOD, "notes.txt": f"{i}".encode()}, branch=f"topic-{i}")
        for i in range(30)
    ]
    for i, (head, number) in enumerate(pulls):
        sent = checked.pull_request("opened", number, head, f"topic-{i}", "main", f"many-{i}")
        assert sent.json()["checks"] == 1
    env.clear_log()
    checked.drain()
    # 26 jobs take their three writes each (pending, result, comment); the 27th waits
    assert checked.content_writes() == 78
    waiting = [j for j in jobs(checked) if j[2] == "pending"]
    assert len(waiting) == 4
    checked.clock.advance(45)
    checked.drain()
    assert checked.content_writes() == 78, "the window is still full"
    checked.clock.advance(16)
    checked.drain()
    assert checked.content_writes() == 90
    assert {j[2] for j in jobs(checked)} == {"done"}
    assert all(len(checked.comments(number)) == 1 for _, number in pulls)


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_a_stored_check_by_the_api_and_a_commit_never_checked(
    checked: Checked, env: ForgeEnv
) -> None:
    head, number = open_pull(env, {"meltano.yml": BROKEN})
    checked.pull_request("opened", number, head, "feature", "main", "api-1")
    assert checked.drain() == 1
    answer = checked.service.get(f"/checks/{head}", token=READ).json()
    assert (answer["ok"], answer["branch"], answer["target"]) == (False, "feature", "main")
    assert [e["rule"] for e in answer["errors"]] == ["job-task"]
    assert answer["base_sha"] == env.head("main")
    removed = {"kind": "loader", "name": "target-jsonl", "change": "removed", "fields": []}
    assert removed not in answer["summary"]["entries"]
    never = checked.service.get(f"/checks/{'0' * 40}", token=READ)
    assert never.status_code == 404
    assert never.headers["content-type"] == "application/problem+json"
    assert checked.service.get("/checks/main", token=READ).status_code == 422
    listed = checked.service.get("/check-jobs?status=done", token=READ).json()
    assert [(j["head_sha"], j["number"], j["status"]) for j in listed] == [(head, number, "done")]


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_bad_signatures_and_oversized_pull_request_bodies_queue_nothing(
    checked: Checked, env: ForgeEnv
) -> None:
    _head, number = open_pull(env, {"meltano.yml": GOOD})
    body = json.dumps({"action": "opened", "number": number, "pad": "x" * 2_000_000}).encode()
    oversized = checked.service.client.post(
        "/v1/projects/warehouse/webhooks",
        content=body,
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": "big-1",
            "X-Hub-Signature-256": github_signature(WEBHOOK_SECRET, body),
        },
    )
    assert oversized.status_code == 413
    forged = checked.service.client.post(
        "/v1/projects/warehouse/webhooks",
        content=b'{"action": "opened"}',
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": "forged-1",
            "X-Hub-Signature-256": github_signature("not the secret", b'{"action": "opened"}'),
        },
    )
    assert forged.status_code == 401
    malformed = checked.github("pull_request", {"action": "opened", "number": "two"}, "bad-1")
    assert malformed.status_code == 400
    assert jobs(checked) == []
    with checked.service.state.engine.connect() as connection:
        stored = connection.execute(sa.select(sa.func.count()).select_from(webhook_events))
        assert stored.scalar_one() == 0


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_a_forge_that_keeps_failing_then_refuses_ends_in_dead_letters(
    checked: Checked, env: ForgeEnv
) -> None:
    assert env.double is not None
    first, number = open_pull(env, {"meltano.yml": GOOD})
    checked.pull_request("opened", number, first, "feature", "main", "f-1")
    # the tree read fails on every attempt: retried with back-off, then dead (3 attempts)
    env.double.inject(Fault("GET", r"/git/trees/", status=404, times=50))
    for _ in range(3):
        assert checked.drain() == 1
        checked.clock.advance(600)
    [job] = checked.service.get("/check-jobs", token=READ).json()
    assert (job["status"], job["attempts"]) == ("dead", 3)
    assert job["last_error"].endswith(".")
    assert checked.state(first) == "error", "no pending status left waiting forever"
    env.double.faults.clear()
    # a request the forge refuses as invalid is not asked again
    second = env.seed({"meltano.yml": BROKEN}, branch="feature", parent=first, message="again")
    checked.pull_request("synchronize", number, second, "feature", "main", "f-2")
    env.double.inject(Fault("POST", r"/statuses/", status=422, times=5))
    assert checked.drain() == 1
    newest = checked.service.get("/check-jobs", token=READ).json()[0]
    assert (newest["head_sha"], newest["status"], newest["attempts"]) == (second, "dead", 1)


@on_doubles
def test_a_push_during_the_check_leaves_no_pending_status_and_the_comment_follows_the_head(
    checked: Checked, env: ForgeEnv
) -> None:
    assert env.double is not None
    first, number = open_pull(env, {"meltano.yml": BROKEN})
    checked.pull_request("opened", number, first, "feature", "main", "during-1")
    # the commit's tree is slow to come: the branch moves while the check reads it
    env.double.inject(Fault("GET", r"/(git/trees|repository/tree)", delay=2.0))
    worker = threading.Thread(target=checked.drain)
    worker.start()
    while checked.posted(first) == 0 and worker.is_alive():
        time.sleep(0.01)
    second = env.seed({"meltano.yml": GOOD}, branch="feature", parent=first, message="during")
    worker.join(60)
    # the old commit got its own result; the job handed over to the new head, which the
    # same pass checked and commented on
    assert (checked.state(first), checked.posted(first)) == ("failure", 2)
    assert (checked.state(second), checked.posted(second)) == ("success", 2)
    key = f"change_request:{number}"
    assert jobs(checked) == [(key, first, "superseded"), (key, second, "done")]
    [comment] = checked.comments(number)
    assert second[:12] in comment["body"]
    assert checked.content_writes() == 5, "four statuses and one comment, none for the old head"


@on_doubles
def test_a_pip_url_no_rule_foresaw_ends_its_job_and_the_worker_goes_on(
    checked: Checked, env: ForgeEnv
) -> None:
    """`git+https://[oops` made urlsplit raise inside the check, which killed the worker's
    thread and left the commit pending for ever (every replica then died on the same job).
    It is now a finding; and whatever a job raises, it ends and the next job is checked."""
    loader = b"pip_url: target-jsonl==0.1.4"
    assert loader in GOOD
    poisoned = GOOD.replace(loader, loader + b" git+https://[oops/o/r.git@main", 1)
    head, number = open_pull(env, {"meltano.yml": poisoned})
    checked.pull_request("opened", number, head, "feature", "main", "pr-poison")
    assert checked.drain() == 1
    state, context, _ = checked.statuses(head)[0]
    assert (state, context) == ("success", "meltano-forge/check")
    [comment] = checked.comments(number)
    assert "pip\\-url" in comment["body"]  # the finding, escaped
