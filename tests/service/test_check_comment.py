"""The check's pull-request comment and the webhook events that ask for it: repository
names stay inert text however they are written, the comment fits the forge's limit, and
the real pull_request and Merge Request Hook payloads parse as GitHub and GitLab send them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from client.check.changes import EntryChange, FieldChange, ProjectChanges, SettingChange
from service import webhooks
from service.check_comment import JOINER, MARKER, MAX_CHARS, code, describe, plain, render

HOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
HOSTILE = [
    "tap-`x`",
    "``",
    "<script>alert(1)</script>",
    "@everyone look",
    "[click](javascript:alert(1))",
    "![img](https://evil.example/x.png)",
    "https://evil.example/phish www.evil.example",
    "#1 !2 ~label %milestone $snippet",
    "**bold** _it_ | table |",
    "line\nbreak\r\n# heading",
]


def rendered(markdown: str) -> str:
    """HTML as a forge renders it, raw HTML on (the strictest case for us)."""
    return str(MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown))


def result(errors: int, warnings: int, message: str = "a problem. Fix it.") -> dict[str, Any]:
    finding = {"rule": "job-task", "file": "meltano.yml", "line": 3, "message": message}
    return {
        "ok": not errors,
        "errors": [{**finding, "severity": "error"}] * errors,
        "warnings": [{**finding, "severity": "warning"}] * warnings,
    }


@pytest.mark.parametrize("text", HOSTILE)
def test_names_and_sentences_render_as_the_text_written(text: str) -> None:
    for markdown in (plain(text), code(text)):
        html = rendered(markdown)
        for tag in ("<a", "<img", "<script", "<strong>", "<em>", "<h1>"):
            assert tag not in html
        shown = re.sub(r"<[^>]+>", "", html).replace(JOINER, "")
        shown = shown.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
        shown = shown.replace("&amp;", "&").replace("&#39;", "'")
        assert shown.strip() == " ".join(text.split())
    assert "\n" not in plain(text)
    assert "\n" not in code(text)


def test_mentions_references_and_autolinks_are_broken_by_a_word_joiner() -> None:
    text = plain("@team #12 https://evil.example www.evil.example")
    visible = re.sub(r"<[^>]+>", "", rendered(text))
    assert re.search(r"@[A-Za-z]", visible) is None
    assert re.search(r"#\d", visible) is None
    assert "://" not in visible
    assert "www." not in visible


def test_the_comment_carries_the_marker_findings_and_what_changed() -> None:
    changes = ProjectChanges(
        True,
        True,
        (
            EntryChange("extractor", "tap-<b>x</b>", "added"),
            EntryChange("loader", "target-@admins", "changed", (FieldChange("variant", "a", "b"),)),
        ),
        (SettingChange("password", "changed", "extractor", "tap-<b>x</b>", "prod"),),
    )
    body = render(
        result(1, 1, "the job 'x' names `@owner`'s <plugin>. Fix it."),
        changes,
        sha="a" * 40,
        branch="feature/`x`",
        target="main",
        base_sha="b" * 40,
        findings_url="https://forge.example.test/projects/p/checks/" + "a" * 40,
    )
    assert body.startswith(MARKER + "\n")
    html = rendered(body)
    assert "<b>" not in html
    assert "<plugin>" not in html
    assert html.count("<a ") == 1, "only our findings link"
    assert "failed: 1 error, 1 warning" in html
    assert "setting <code>password</code> changed" in html
    assert "variant <code>a</code> → <code>b</code>" in html


def test_a_huge_result_is_cut_to_fit_and_points_at_the_findings_page() -> None:
    body = render(
        result(20_000, 5_000, "x" * 900),
        ProjectChanges(True, True),
        sha="a" * 40,
        branch="b",
        target=None,
        base_sha=None,
        findings_url="https://forge.example.test/projects/p/checks/" + "a" * 40,
    )
    assert len(body) <= MAX_CHARS < 65_536
    assert "cut to fit the forge's limit" in body
    assert "findings page" in body.splitlines()[-1]


def test_the_status_line_counts() -> None:
    assert describe(result(0, 0)) == "No errors"
    assert describe(result(2, 1)) == "2 errors, 1 warning"
    assert describe(result(0, 3)) == "No errors, 3 warnings"


def headers(forge: str, event: str) -> dict[str, str]:
    if forge == "github":
        return {"x-github-event": event, "x-github-delivery": "d-1"}
    return {"x-gitlab-event": event, "x-gitlab-event-uuid": "u-1"}


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_github_pull_request_payloads_put_their_head_up_for_review(action: str) -> None:
    body = (HOOKS / "github" / f"pull_request-{action}.payload.json").read_bytes()
    event = webhooks.parse_change_request("github", headers("github", "pull_request"), body)
    assert event is not None
    data = json.loads(body)["pull_request"]
    assert (event.number, event.head_sha, event.source, event.target, event.action) == (
        2,
        data["head"]["sha"],
        "changes",
        "master",
        action,
    )
    assert event.delivery_id == "github:d-1"


def test_a_closed_pull_request_and_gitlab_actions_without_new_commits_are_ignored() -> None:
    closed = (HOOKS / "github" / "pull_request-closed.payload.json").read_bytes()
    assert (
        webhooks.parse_change_request("github", headers("github", "pull_request"), closed) is None
    )
    raw = json.loads((HOOKS / "gitlab" / "merge_request.payload.json").read_bytes())
    hook = headers("gitlab", "Merge Request Hook")
    opened = webhooks.parse_change_request("gitlab", hook, json.dumps(raw).encode())
    assert opened is not None
    attributes = raw["object_attributes"]
    assert (opened.number, opened.head_sha, opened.source, opened.target) == (
        attributes["iid"],
        attributes["last_commit"]["id"],
        attributes["source_branch"],
        attributes["target_branch"],
    )
    for action, oldrev in (("update", None), ("close", None), ("merge", None), ("approved", None)):
        raw["object_attributes"].update(action=action, oldrev=oldrev)
        assert webhooks.parse_change_request("gitlab", hook, json.dumps(raw).encode()) is None
    raw["object_attributes"].update(action="update", oldrev="c" * 40)
    assert webhooks.parse_change_request("gitlab", hook, json.dumps(raw).encode()) is not None


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"action": "opened"}', b'{"action": "opened", "number": 1, "pull_request": {}}'],
)
def test_a_body_not_shaped_like_a_pull_request_is_refused(body: bytes) -> None:
    with pytest.raises(webhooks.BadPayload):
        webhooks.parse_change_request("github", headers("github", "pull_request"), body)
