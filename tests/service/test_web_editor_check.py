"""The web editor's live project check and its CodeMirror editor, against the real service
and the GitHub double: the check endpoint (findings at their lines, no forge request per
keystroke), commits refused when they add errors (with and without JavaScript; a project
already failing can still be fixed), the settings forms checked before they commit, and in
Debian's Chromium: the error marker in the gutter, completion of the project's names, the
draft kept across a refusal and a reload, and the page read without JavaScript."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from providers.contract import FileMode
from service import checks
from tests.conftest import ForgeEnv
from tests.service.conftest import Service, screenshot, sign_in, type_into_editor
from tests.service.test_web import csrf_of, signed_in_client

ON_GITHUB = pytest.mark.parametrize("env", ["github"], indirect=True)
PROJECT = b"""version: 1
default_environment: dev
project_id: 7a1f3c0e-2b4d-4e5f-8a9b-0c1d2e3f4a5b
send_anonymous_usage_stats: false
include_paths:
- ./schedules/*.meltano.yml
environments:
- name: dev
- name: prod
plugins:
  extractors:
  - name: tap-csv
    namespace: tap_csv
    pip_url: meltanolabs-tap-csv==1.2.0
    settings:
    - name: replica_host
      sensitive: true
  - name: tap-csv--archive
    inherit_from: tap-csv
  loaders:
  - name: target-jsonl
    namespace: target_jsonl
    pip_url: target-jsonl==0.1.4
jobs:
- name: load
  tasks:
  - tap-csv target-jsonl
"""
SCHEDULES = b"""schedules:
- name: daily-load
  interval: '@daily'
  job: load
"""
TASK_LINE = PROJECT.decode().splitlines().index("  - tap-csv target-jsonl") + 1
ERROR_LINE = TASK_LINE
"""The check reports a job's task error at the task's own line."""
BROKEN = PROJECT.replace(b"  - tap-csv target-jsonl", b"  - tap-csv target-parquet")


def seeded(env: ForgeEnv, meltano_yml: bytes = PROJECT) -> str:
    files: dict[str, bytes | tuple[bytes, FileMode]] = {
        "meltano.yml": meltano_yml,
        "schedules/daily.meltano.yml": SCHEDULES,
        "README.md": b"# warehouse\n",
    }
    base = env.seed(files)
    env.forge.create_branch("development", base)
    checks.forget()  # each test reads its commits afresh, so the counts are its own
    return base


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    signed = signed_in_client(service)
    yield signed
    signed.close()


def check(client: httpx.Client, base: str, path: str, content: bytes, csrf: str) -> Any:
    answer = client.post(
        "/projects/warehouse/edit/check",
        data={"csrf": csrf, "path": path, "base": base, "content": content.decode()},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def commit(client: httpx.Client, base: str, path: str, content: bytes, csrf: str) -> Any:
    return client.post(
        "/projects/warehouse/edit/commit",
        data={
            "csrf": csrf,
            "branch": "development",
            "path": path,
            "base": base,
            "content": content.decode(),
            "message": "an edit",
        },
        follow_redirects=False,
    )


def editor_csrf(client: httpx.Client, path: str = "meltano.yml") -> str:
    page = client.get("/projects/warehouse/edit", params={"branch": "development", "path": path})
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def draft_of(page: str) -> str:
    found = re.search(r'<textarea id="content"[^>]*>\n(.*?)</textarea>', page, re.DOTALL)
    assert found is not None, page
    return html.unescape(found.group(1))


@ON_GITHUB
def test_the_check_answers_each_keystroke_without_asking_the_forge(
    service: Service, env: ForgeEnv, client: httpx.Client
) -> None:
    base = seeded(env)
    assert env.double is not None
    csrf = editor_csrf(client)
    checks.forget()  # as if the page had been served by another replica
    env.double.clear_log()
    first = check(client, base, "meltano.yml", BROKEN, csrf)
    assert first["ok"] is False
    assert first["refused"] is True
    [error] = first["errors"]
    assert error == {
        "rule": "job-task",
        "severity": "error",
        "file": "meltano.yml",
        "line": ERROR_LINE,
        "column": None,
        "message": error["message"],
        "here": True,
        "new": True,
    }
    assert "target-parquet" in error["message"]
    read_once = [(e.method, e.path.rsplit("/", 2)[-2]) for e in env.double.requests()]
    assert sorted(read_once) == [("GET", "contents"), ("GET", "schedules"), ("GET", "trees")]
    for n in range(10):  # ten keystrokes, ten checks of a new draft
        again = check(client, base, "meltano.yml", BROKEN + f"# {n}\n".encode(), csrf)
        assert again["errors"][0]["line"] == ERROR_LINE
    fixed = check(client, base, "meltano.yml", PROJECT + b"# fixed\n", csrf)
    assert fixed == {"ok": True, "refused": False, "errors": [], "warnings": []}
    assert len(env.double.requests()) == len(read_once), "no forge request after the first check"


@ON_GITHUB
def test_an_include_file_and_a_file_outside_the_project_are_checked_as_the_project(
    service: Service, env: ForgeEnv, client: httpx.Client
) -> None:
    base = seeded(env)
    csrf = editor_csrf(client, "schedules/daily.meltano.yml")
    broken = SCHEDULES.replace(b"job: load", b"job: nightly")
    found = check(client, base, "schedules/daily.meltano.yml", broken, csrf)
    [error] = found["errors"]
    assert (error["rule"], error["file"], error["line"], error["here"]) == (
        "schedule-target",
        "schedules/daily.meltano.yml",
        4,
        True,
    )
    yaml_error = check(client, base, "schedules/daily.meltano.yml", b"schedules: [\n", csrf)
    assert yaml_error["refused"] is True
    assert yaml_error["errors"][0]["here"] is True
    assert yaml_error["errors"][0]["line"] is not None
    readme = check(client, base, "README.md", b"# anything at all: [\n", csrf)
    assert readme == {"ok": True, "refused": False, "errors": [], "warnings": []}
    refused = commit(client, base, "schedules/daily.meltano.yml", broken, csrf)
    assert refused.status_code == 200
    assert "schedules/daily.meltano.yml:4 schedule-target" in html.unescape(refused.text)
    assert env.head("development") == base


@ON_GITHUB
def test_a_commit_that_adds_errors_is_refused_without_javascript_and_keeps_the_draft(
    service: Service, env: ForgeEnv, client: httpx.Client
) -> None:
    base = seeded(env)
    csrf = editor_csrf(client)
    refused = commit(client, base, "meltano.yml", BROKEN, csrf)
    assert refused.status_code == 200, refused.text
    text = html.unescape(refused.text)
    assert "Nothing was committed: the change adds 1 error to the project's check" in text
    assert f"meltano.yml:{ERROR_LINE} job-task" in text
    assert 'id="check-findings"' in refused.text
    assert draft_of(refused.text) == BROKEN.decode(), "the draft comes back as it was posted"
    assert env.head("development") == base, "nothing was committed"
    fixed = commit(client, base, "meltano.yml", PROJECT + b"# fixed\n", csrf)
    assert fixed.status_code == 303, fixed.text
    assert env.git("show", "development:meltano.yml").endswith("# fixed\n")


@ON_GITHUB
def test_a_project_already_failing_can_be_fixed_a_change_at_a_time(
    service: Service, env: ForgeEnv, client: httpx.Client
) -> None:
    base = seeded(env, BROKEN)
    csrf = editor_csrf(client)
    unrelated = BROKEN.replace(b"- name: prod", b"- name: prod\n- name: staging")
    seen = check(client, base, "meltano.yml", unrelated, csrf)
    assert (seen["ok"], seen["refused"]) == (False, False)
    assert seen["errors"][0]["new"] is False
    assert seen["errors"][0]["line"] == ERROR_LINE + 1, "the error moved a line down"
    worse = unrelated.replace(b"job: load", b"job: load").replace(
        b"default_environment: dev", b"default_environment: qa"
    )
    assert commit(client, base, "meltano.yml", worse, csrf).status_code == 200
    assert env.head("development") == base, "an edit that adds an error is refused"
    allowed = commit(client, base, "meltano.yml", unrelated, csrf)
    assert allowed.status_code == 303, allowed.text
    head = env.head("development") or ""
    fixed = unrelated.replace(b"target-parquet", b"target-jsonl")
    assert commit(client, head, "meltano.yml", fixed, editor_csrf(client)).status_code == 303
    assert "target-parquet" not in env.git("show", "development:meltano.yml")


@ON_GITHUB
def test_the_settings_forms_refuse_a_change_that_breaks_the_check(
    service: Service, env: ForgeEnv, client: httpx.Client
) -> None:
    base = seeded(env)
    settings = client.get("/projects/warehouse/settings", params={"branch": "development"})
    csrf = csrf_of(settings.text)

    def set_setting(plugin: str, field: str, value: str) -> httpx.Response:
        return client.post(
            "/projects/warehouse/settings/setting",
            data={"csrf": csrf, "branch": "development", "name": plugin, "field": field}
            | {"value": value},
            follow_redirects=False,
        )

    # The parent's definition marks replica_host sensitive: the form's own secret rule does
    # not see it on the child, the project's check does.
    refused = set_setting("tap-csv--archive", "replica_host", "db-replica.internal")
    assert refused.status_code == 200, refused.text
    text = html.unescape(refused.text)
    assert "Nothing was committed: the change adds 1 error to the project's check" in text
    assert "literal-secret" in text
    assert "TAP_CSV__ARCHIVE_REPLICA_HOST" in text
    assert env.head("development") == base
    accepted = set_setting("tap-csv", "delimiter", ";")
    assert accepted.status_code == 303, accepted.text
    assert "delimiter: ;" in env.git("show", "development:meltano.yml")


# ---- in the browser ------------------------------------------------------------------------


def csp_violations(page: Page) -> list[str]:
    """Console errors the page's Content-Security-Policy raised, collected as they come."""
    seen: list[str] = []

    def heard(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            seen.append(f"{message.text} at {message.location}")

    page.on("console", heard)
    return seen


@pytest.mark.slow
@ON_GITHUB
def test_typing_a_broken_reference_marks_its_line_and_completion_offers_names(
    page: Page, service: Service, env: ForgeEnv
) -> None:
    seeded(env)
    violations = csp_violations(page)
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse/edit?branch=development&path=meltano.yml")
    editor = page.locator(".cm-editor")
    expect(editor).to_be_visible()
    expect(page.locator("#content")).to_be_hidden()
    expect(page.locator(".cm-lineNumbers")).to_contain_text(str(TASK_LINE))
    expect(page.locator(".cm-content .tok-keyword, .cm-content span[class]").first).to_be_visible()
    # Type the broken name into the task's line: the check marks that line in the gutter.
    line = page.locator(".cm-line").nth(TASK_LINE - 1)
    expect(line).to_have_text("  - tap-csv target-jsonl")
    line.click()
    page.keyboard.press("End")
    for _ in range(len("jsonl")):
        page.keyboard.press("Backspace")
    page.keyboard.type("parquet")
    marker = page.locator(".cm-gutter-lint .cm-gutterElement .cm-lint-marker-error")
    expect(marker).to_have_count(1)
    marked = marker.bounding_box()
    row = page.locator(".cm-line").nth(ERROR_LINE - 1).bounding_box()
    assert marked is not None
    assert row is not None
    middle = marked["y"] + marked["height"] / 2
    assert row["y"] <= middle <= row["y"] + row["height"], ("the marker is off its line", marked)
    expect(page.locator("#check-status")).to_contain_text("fails with this change")
    expect(page.locator("#check-findings")).to_contain_text(f"meltano.yml:{ERROR_LINE} job-task")
    expect(page.locator("#content")).to_have_value(BROKEN.decode(), timeout=2000)
    screenshot(page, "editor-check")
    marker.hover()  # the gutter's marker says what is wrong
    expect(page.locator(".cm-tooltip")).to_contain_text("'target-parquet' names no plugin")
    page.mouse.move(0, 0)
    page.locator(".cm-line").nth(0).click()  # away from it, so the jump is seen
    expect(page.locator(".cm-activeLine")).to_have_text("version: 1")
    page.get_by_role("button", name=f"meltano.yml:{ERROR_LINE}").click()
    expect(page.locator(".cm-activeLine")).to_have_text("  - tap-csv target-parquet")
    expect(page.get_by_label("meltano.yml (code editor)")).to_be_focused()
    page.locator(".cm-line").nth(TASK_LINE - 1).click()
    # Completion: a new task line, a few letters, the project's plugin names offered.
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    page.keyboard.type("- tar")
    options = page.locator(".cm-tooltip-autocomplete li")
    expect(options.first).to_be_visible()
    expect(page.locator(".cm-tooltip-autocomplete")).to_contain_text("target-jsonl")
    page.keyboard.press("Escape")
    # The editor, its styles, the check and the completion ran under the page's strict
    # policy. (Replacing a selection of several lines by typing may still be reported: that
    # is Chromium's own editing of the contenteditable, blocked and redrawn by CodeMirror.)
    assert violations == [], violations
    type_into_editor(page, PROJECT.decode())
    page.keyboard.type("default_environment: pr")
    expect(page.locator(".cm-tooltip-autocomplete")).to_contain_text("prod")
    names = page.locator(".cm-tooltip-autocomplete li").all_inner_texts()
    assert any("prod" in n and "environment" in n for n in names), names
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    page.keyboard.type("job: lo")  # job names too
    offer = page.locator(".cm-tooltip-autocomplete li").filter(has_text=re.compile("^load"))
    offer.click()  # take the offer
    expect(page.locator(".cm-activeLine")).to_have_text("job: load")


@pytest.mark.slow
@ON_GITHUB
def test_a_refused_commit_shows_the_errors_and_the_draft_survives_a_reload(
    page: Page, service: Service, env: ForgeEnv
) -> None:
    base = seeded(env)
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse/edit?branch=development&path=meltano.yml")
    expect(page.locator(".cm-editor")).to_be_visible()
    type_into_editor(page, BROKEN.decode())
    expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
    page.get_by_role("button", name="Commit to development").click()
    expect(page.locator("#error")).to_contain_text("Nothing was committed")
    expect(page.locator("#check-findings")).to_contain_text("job-task")
    expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
    assert env.head("development") == base
    page.goto(f"{url}/projects/warehouse/edit?branch=development&path=meltano.yml")  # reopened
    expect(page.get_by_role("status").first).to_contain_text("draft was restored")
    expect(page.locator("#content")).to_have_value(BROKEN.decode())
    expect(page.locator(".cm-line").nth(TASK_LINE - 1)).to_have_text("  - tap-csv target-parquet")
    expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
    # Fix it in the editor: the marker goes, and the commit goes through.
    line = page.locator(".cm-line").nth(TASK_LINE - 1)
    line.click()
    page.keyboard.press("End")
    for _ in range(len("parquet")):
        page.keyboard.press("Backspace")
    page.keyboard.type("jsonl  # fixed")
    expect(page.locator("#check-status")).to_have_text("No errors: the project passes the check.")
    expect(page.locator(".cm-lint-marker-error")).to_have_count(0)
    page.get_by_role("button", name="Commit to development").click()
    expect(page.locator("#committed")).to_contain_text("Committed")
    drafts = page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('mf-draft:'))")
    assert drafts == [], "a committed draft is cleared"
    fixed = PROJECT.replace(b"tap-csv target-jsonl\n", b"tap-csv target-jsonl  # fixed\n")
    assert env.git("show", "development:meltano.yml") == fixed.decode()
    assert env.head("development") != base


@pytest.mark.slow
@ON_GITHUB
def test_the_settings_form_shows_the_checks_findings_in_the_browser(
    page: Page, service: Service, env: ForgeEnv
) -> None:
    base = seeded(env)
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse/settings?branch=development")
    page.get_by_label("Plugin").select_option("tap-csv--archive")
    page.get_by_label("Setting").fill("replica_host")
    page.get_by_label("Value (not a secret)").fill("db-replica.internal")
    page.get_by_role("button", name="Set and commit").first.click()
    expect(page.locator("#error")).to_contain_text("adds 1 error to the project's check")
    expect(page.locator("#check-findings")).to_contain_text("literal-secret")
    assert env.head("development") == base
    page.get_by_label("Plugin").select_option("tap-csv")
    page.get_by_label("Setting").fill("delimiter")
    page.get_by_label("Value (not a secret)").fill(";")
    page.get_by_role("button", name="Set and commit").first.click()
    expect(page.locator("#committed")).to_contain_text("Committed")
    assert "delimiter: ;" in env.git("show", "development:meltano.yml")


@pytest.mark.slow
@ON_GITHUB
def test_the_editor_reads_without_javascript(
    browser: Browser, service: Service, env: ForgeEnv
) -> None:
    seeded(env)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        url = sign_in(page, service)
        page.goto(f"{url}/projects/warehouse/edit?branch=development&path=meltano.yml")
        area = page.get_by_label("Contents of meltano.yml")
        expect(area).to_be_visible()
        expect(area).to_have_value(PROJECT.decode())
        expect(page.locator(".cm-editor")).to_have_count(0)
        area.fill(BROKEN.decode())
        page.get_by_role("button", name="Commit to development").click()
        expect(page.locator("#error")).to_contain_text("Nothing was committed")
        expect(page.locator("#check-findings")).to_contain_text(f"meltano.yml:{ERROR_LINE}")
        expect(page.get_by_label("Contents of meltano.yml")).to_have_value(BROKEN.decode())
    finally:
        context.close()


@ON_GITHUB
def test_a_project_in_a_folder_is_checked_with_its_own_paths(
    service: Service, env: ForgeEnv, client: httpx.Client
) -> None:
    projects = service.state.projects
    folder = projects.projects[0].model_copy(update={"project_path": "warehouse"})
    service.state.projects = projects.model_copy(update={"projects": (folder,)})
    base = env.seed(
        {
            "warehouse/meltano.yml": PROJECT,
            "warehouse/schedules/daily.meltano.yml": SCHEDULES,
            "README.md": b"# the repository\n",
        }
    )
    env.forge.create_branch("development", base)
    checks.forget()
    csrf = editor_csrf(client, "warehouse/meltano.yml")
    found = check(client, base, "warehouse/meltano.yml", BROKEN, csrf)
    [error] = found["errors"]
    assert (error["file"], error["line"], error["here"]) == ("meltano.yml", ERROR_LINE, True)
    outside = check(client, base, "README.md", b"# anything\n", csrf)
    assert outside == {"ok": True, "refused": False, "errors": [], "warnings": []}
    refused = commit(client, base, "warehouse/meltano.yml", BROKEN, csrf)
    assert refused.status_code == 200
    assert f"meltano.yml:{ERROR_LINE} job-task" in html.unescape(refused.text)
    assert commit(client, base, "README.md", b"# edited\n", csrf).status_code == 303


BUNDLE = Path(__file__).parents[2] / "service" / "web" / "editor_bundle"
VENDOR = Path(__file__).parents[2] / "service" / "web" / "static" / "vendor"


def test_the_vendored_bundle_lists_the_license_and_version_of_what_it_holds() -> None:
    """The committed bundle's license file names each package at the version the lock file
    pins (CI has no npm: this is what says the vendored files were built from the lock)."""
    lock = json.loads((BUNDLE / "package-lock.json").read_text())["packages"]
    pinned = {path.removeprefix("node_modules/"): p["version"] for path, p in lock.items() if path}
    licenses = (VENDOR / "codemirror.LICENSES.txt").read_text()
    listed = re.findall(r"^(@?[\w./-]+) (\d+\.\d+\.\d+\S*) \((\w[\w.-]*)\)$", licenses, re.M)
    assert {"@codemirror/view", "@codemirror/lang-yaml", "@codemirror/lint"} <= {
        name for name, _, _ in listed
    }
    for name, version, license_name in listed:
        assert pinned[name] == version, name
        assert license_name == "MIT", name
    direct = json.loads((BUNDLE / "package.json").read_text())["dependencies"]
    assert set(direct) <= {name for name, _, _ in listed}, "every dependency is in the bundle"
    assert "new Function" not in (VENDOR / "codemirror.js").read_text(), "no eval under the CSP"


@ON_GITHUB
def test_the_editor_page_keeps_the_strict_policy_and_serves_the_bundle(
    service: Service, env: ForgeEnv, client: httpx.Client
) -> None:
    seeded(env)
    page = client.get("/projects/warehouse/edit", params={"branch": "development"})
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "style-src 'self';" in policy
    assert "unsafe" not in policy
    assert '<script src="/static/vendor/codemirror.js" defer></script>' in page.text
    names = re.search(r'<script type="application/json" id="names">(.*?)</script>', page.text)
    assert names is not None
    assert json.loads(html.unescape(names.group(1))) == {
        "plugins": ["tap-csv", "tap-csv--archive", "target-jsonl"],
        "jobs": ["load"],
        "schedules": ["daily-load"],
        "environments": ["dev", "prod"],
    }
    bundle = client.get("/static/vendor/codemirror.js")
    assert bundle.status_code == 200
    assert "javascript" in bundle.headers["content-type"]
