"""The web UI in a real browser (Debian's Chromium, driven by Playwright) against the real
service over HTTP: sign in, see a dirty workspace a real runner reported, edit and commit,
the "You have uncommitted changes" prompt and the merge, a refusal on a protected branch,
settings forms, promote, a push that shows up live, and refused cross-site posts."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from pydantic import SecretStr

from providers.contract import FileChange, FileMode
from service.app import startup_lines
from service.web import setup_store
from service.webhooks import github_signature
from tests.client.conftest import FIXTURES, PLUGIN, Runner
from tests.conftest import ForgeEnv
from tests.service.conftest import (
    ADMIN,
    READ,
    WEBHOOK_SECRET,
    WRITE,
    Service,
    screenshot,
    sign_in,
    type_into_editor,
)

pytestmark = pytest.mark.slow
LOCAL_AND_GITHUB = pytest.mark.parametrize("env", ["local", "github"], indirect=True)
ON_GITHUB = pytest.mark.parametrize("env", ["github"], indirect=True)
MELTANO_YML = (
    (FIXTURES / "meltano-config" / "meltano.yml").read_bytes()
    + PLUGIN.encode()
    + b"schedules:\n- name: daily-load\n  interval: '@daily'\n  job: load\n"
)


def seeded(env: ForgeEnv) -> str:
    base = env.seed({"meltano.yml": MELTANO_YML, "README.md": b"# warehouse\n"})
    env.forge.create_branch("development", base)
    return base


@ON_GITHUB
def test_sign_in_sets_a_strict_http_only_session(
    page: Page, service: Service, env: ForgeEnv
) -> None:
    seeded(env)
    url = str(service.client.base_url).rstrip("/")
    page.goto(f"{url}/projects/warehouse")
    expect(page).to_have_url(f"{url}/signin?next=/projects/warehouse")
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not known to this service")
    sign_in(page, service)
    cookie = next(c for c in page.context.cookies() if c["name"] == "mf_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["expires"] > 0
    expect(page.get_by_role("link", name="warehouse")).to_be_visible()
    expect(page.get_by_text("working development")).to_be_visible()
    screenshot(page, "projects")
    page.get_by_role("link", name="warehouse").click()
    expect(page.get_by_role("heading", name="Branches")).to_be_visible()
    expect(page.locator("#branches")).to_contain_text("protected")
    expect(page.locator("dl.summary")).to_contain_text("daily-load")
    screenshot(page, "project")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{url}/signin")
    page.goto(f"{url}/projects/warehouse")
    expect(page).to_have_url(f"{url}/signin?next=/projects/warehouse")


@LOCAL_AND_GITHUB
def test_edit_and_commit_meltano_yml(page: Page, service: Service, env: ForgeEnv) -> None:
    base = seeded(env)
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse/edit")
    area = page.get_by_label("Contents of meltano.yml")
    expect(area).to_have_value(MELTANO_YML.decode())
    type_into_editor(page, MELTANO_YML.decode() + "# edited in the browser\n")
    expect(area).to_have_value(MELTANO_YML.decode() + "# edited in the browser\n")
    # The fixture's schedule names a job it lacks: the branch fails the check already, and
    # an edit that adds no error may still be committed.
    expect(page.locator("#check-status")).to_contain_text("No new errors")
    expect(page.get_by_label("Commit message")).to_have_value("Update meltano.yml from the web UI")
    screenshot(page, "editor")
    page.get_by_role("button", name="Commit to development").click()
    expect(page.locator("#committed")).to_contain_text("Committed")
    drafts = page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('mf-draft:'))")
    assert drafts == [], "a committed draft is cleared"
    assert env.git("show", "development:meltano.yml").endswith("# edited in the browser\n")
    assert env.git("rev-list", "--count", f"{base}..development").strip() == "1"
    assert env.head("main") == base


@ON_GITHUB
def test_a_moved_branch_prompts_and_merges_instead_of_overwriting(
    page: Page, service: Service, env: ForgeEnv
) -> None:
    seeded(env)
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse/edit")
    area = page.get_by_label("Contents of meltano.yml")
    mine = MELTANO_YML.decode().replace("- name: dev", "- name: dev\n- name: mine", 1)
    type_into_editor(page, mine)
    expect(area).to_have_value(mine)
    head = env.head("development") or ""
    theirs = MELTANO_YML.replace(b"default_environment: dev", b"default_environment: dev\n# theirs")
    assert theirs != MELTANO_YML
    env.forge.commit(
        "development",
        head,
        [FileChange.put("meltano.yml", theirs, base_mode=FileMode.REGULAR)],
        "theirs",
    )
    page.get_by_role("button", name="Pull").click()
    dialog = page.get_by_role("dialog", name="You have uncommitted changes")
    expect(dialog).to_be_visible()
    for name in ("Commit", "Discard", "Cancel", "Pull into my draft"):
        expect(dialog.get_by_role("button", name=name)).to_be_visible()
    screenshot(page, "prompt")
    dialog.get_by_role("button", name="Pull into my draft").click()
    expect(page.get_by_role("status").first).to_contain_text("into your draft")
    merged = area.input_value()
    assert "- name: mine" in merged
    assert "# theirs" in merged
    again = env.head("development") or ""
    env.forge.commit(
        "development",
        again,
        [FileChange.put("meltano.yml", theirs + b"# later\n", base_mode=FileMode.REGULAR)],
        "later",
    )
    page.get_by_role("button", name="Commit to development").click()
    expect(page.locator("#moved")).to_contain_text("You have uncommitted changes")
    final = area.input_value()
    assert "- name: mine" in final
    assert "# later" in final
    page.get_by_role("button", name="Commit to development").click()
    expect(page.locator("#committed")).to_be_visible()
    landed = env.git("show", "development:meltano.yml")
    assert "- name: mine" in landed
    assert "# theirs" in landed
    assert "# later" in landed


@ON_GITHUB
def test_a_protected_branch_cannot_be_committed_to_from_the_ui(
    page: Page, service: Service, env: ForgeEnv
) -> None:
    base = seeded(env)
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse/edit?branch=main")
    expect(page.locator("#read-only")).to_contain_text("protected in this project's configuration")
    expect(page.get_by_role("link", name="Edit on development instead")).to_be_visible()
    expect(page.get_by_role("button", name="Commit to main")).to_be_disabled()
    screenshot(page, "read-only")
    csrf = page.locator("input[name=csrf]").first.input_value()
    forced = page.request.post(
        f"{url}/projects/warehouse/edit/commit",
        form={
            "csrf": csrf,
            "branch": "main",
            "path": "meltano.yml",
            "base": base,
            "content": "hijacked: true\n",
            "message": "x",
        },
    )
    assert "is read-only" in forced.text() or "protected" in forced.text()
    assert env.head("main") == base


@ON_GITHUB
def test_settings_forms_make_minimal_commits(page: Page, service: Service, env: ForgeEnv) -> None:
    seeded(env)
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse/settings")
    page.get_by_label("Setting").fill("a_string")
    page.get_by_label("Value (not a secret)").fill("from the form")
    screenshot(page, "settings")
    page.get_by_role("button", name="Set and commit").first.click()
    expect(page.locator("#committed")).to_be_visible()
    text = env.git("show", "development:meltano.yml")
    assert "a_string: from the form" in text
    assert "# Use this environment when adding" in text, "comments are kept"
    page.goto(f"{url}/projects/warehouse/settings")
    page.get_by_label("Name").fill("qa")
    page.get_by_role("button", name="Add and commit").click()
    expect(page.locator("#committed")).to_be_visible()
    assert "- name: qa" in env.git("show", "development:meltano.yml")
    page.goto(f"{url}/projects/warehouse/settings")
    page.get_by_label("Setting").fill("password")
    page.get_by_label("Value (not a secret)").fill("hunter2")
    page.get_by_role("button", name="Set and commit").first.click()
    expect(page.locator("#error")).to_contain_text("secrets are never committed")
    assert "hunter2" not in env.git("show", "development:meltano.yml")


@LOCAL_AND_GITHUB
def test_compare_and_promote(page: Page, service: Service, env: ForgeEnv) -> None:
    base = seeded(env)
    env.forge.commit(
        "development",
        base,
        [FileChange.put("README.md", b"# warehouse\n\nPromoted.\n", base_mode=FileMode.REGULAR)],
        "Describe",
    )
    # A local repository promotes at once, into a read-only branch: that takes an admin.
    url = sign_in(page, service, ADMIN if env.kind == "local" else WRITE)
    page.goto(f"{url}/projects/warehouse/compare")
    expect(page.get_by_text("1 commit ahead, 0 behind")).to_be_visible()
    expect(page.locator("pre.diff")).to_contain_text("+Promoted.")
    screenshot(page, "compare")
    page.goto(f"{url}/projects/warehouse/compare?view=split")
    expect(page.locator(".split table")).to_be_visible()
    page.get_by_role("button", name="Promote development to main").click()
    outcome = page.locator("#promoted")
    if env.kind == "local":
        expect(outcome).to_contain_text("fast-forwarded 'main'")
        assert env.head("main") == env.head("development")
    else:
        expect(outcome).to_contain_text("Opened")
        assert env.double is not None
        assert env.double.pulls  # type: ignore[attr-defined]


@ON_GITHUB
def test_a_dirty_workspace_reported_by_a_real_runner(
    page: Page, service: Service, env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seeded(env)
    run = Runner(env, tmp_path, no_git)
    run.base.update(
        MELTANO_FORGE_REPO=str(service.client.base_url).rstrip("/") + "/v1/projects/warehouse",
        MELTANO_FORGE_TOKEN=WRITE,
        MELTANO_FORGE_PROVIDER="",
        MELTANO_FORGE_API_URL="",
        MELTANO_FORGE_WORKSPACE_ID="runner-dashboard",
        MELTANO_FORGE_AUTO_COMMIT="false",
    )
    result = run("run", "--", "sh", "-c", "echo '# work in progress' >> meltano.yml")
    assert result.returncode == 0, result.stderr
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse")
    expect(page.get_by_role("alert")).to_contain_text("1 workspace with uncommitted changes")
    page.get_by_role("link", name="1 workspace with uncommitted changes").click()
    card = page.get_by_label("Workspace runner-dashboard")
    expect(card).to_contain_text("uncommitted changes")
    expect(card.locator("pre.diff")).to_contain_text("+# work in progress")
    screenshot(page, "workspaces")


@ON_GITHUB
def test_a_push_on_the_forge_shows_up_live(page: Page, service: Service, env: ForgeEnv) -> None:
    base = seeded(env)
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse")
    page.evaluate("window.stayed = true")
    new = env.forge.commit(
        "development",
        base,
        [FileChange.put("README.md", b"pushed\n", base_mode=FileMode.REGULAR)],
        "Pushed elsewhere",
    ).sha
    payload = json.loads(
        (
            Path(__file__).resolve().parents[1]
            / "fixtures"
            / "webhooks"
            / "github"
            / "push-with-new-branch.payload.json"
        ).read_bytes()
    )
    body = json.dumps(
        {**payload, "ref": "refs/heads/development", "before": base, "after": new}
    ).encode()
    answer = service.client.post(
        "/v1/projects/warehouse/webhooks",
        content=body,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "live-1",
            "X-Hub-Signature-256": github_signature(WEBHOOK_SECRET, body),
        },
    )
    assert answer.status_code == 202
    expect(page.locator("ol.history")).to_contain_text("Pushed elsewhere", timeout=15000)
    expect(page.locator("#live-notice")).to_contain_text("development moved to")
    assert page.evaluate("window.stayed") is True, "no reload"


class EvilSite:
    """Another origin whose page posts a form to the service as soon as it loads."""

    def __init__(self, target: str) -> None:
        html = (
            f'<form id="f" method="post" action="{target}">'
            '<input name="branch" value="development">'
            '<input name="path" value="meltano.yml"><input name="base" value="x">'
            '<input name="content" value="pwned: true"><input name="message" value="pwned">'
            '</form><script>document.getElementById("f").submit()</script>'
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(html)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@ON_GITHUB
def test_cross_site_and_csrf_less_posts_are_refused(
    page: Page, service: Service, env: ForgeEnv
) -> None:
    seeded(env)
    url = sign_in(page, service)
    head = env.head("development")
    evil = EvilSite(f"{url}/projects/warehouse/edit/commit")
    try:
        page.goto(evil.url)
        page.wait_for_load_state("networkidle")
    finally:
        evil.server.shutdown()
        evil.server.server_close()
    assert env.head("development") == head, "the cross-site form changed nothing"
    without = page.request.post(
        f"{url}/projects/warehouse/edit/commit",
        form={
            "branch": "development",
            "path": "meltano.yml",
            "base": head or "",
            "content": "x",
            "message": "x",
        },
    )
    assert without.status == 422 or without.status == 403, without.status
    wrong = page.request.post(
        f"{url}/projects/warehouse/edit/commit",
        form={
            "csrf": "not-the-token",
            "branch": "development",
            "path": "meltano.yml",
            "base": head or "",
            "content": "x",
            "message": "x",
        },
    )
    assert wrong.status == 403
    assert env.head("development") == head


@ON_GITHUB
def test_a_read_token_sees_but_cannot_act(page: Page, service: Service, env: ForgeEnv) -> None:
    seeded(env)
    url = sign_in(page, service, READ)
    page.goto(f"{url}/projects/warehouse/edit")
    expect(page.get_by_role("button", name="Commit to development")).to_be_disabled()
    expect(page.locator("#why-disabled")).to_contain_text("read role")
    page.goto(f"{url}/projects/warehouse/compare")
    expect(page.get_by_role("button", name="Promote development to main")).to_be_disabled()


@ON_GITHUB
def test_deliveries_live_and_retry_for_admins(page: Page, service: Service, env: ForgeEnv) -> None:
    seeded(env)
    import time

    import sqlalchemy as sa

    from service.storage import deliveries

    with service.state.engine.begin() as connection:
        connection.execute(
            sa.insert(deliveries).values(
                project="warehouse",
                target="prod",
                url="http://127.0.0.1:9/deploy",
                idempotency_key="dead-1",
                payload="{}",
                status="dead",
                attempts=8,
                next_attempt_at=time.time(),
                last_error="connection refused",
                created_at=time.time(),
            )
        )
    url = sign_in(page, service, ADMIN)
    page.goto(f"{url}/projects/warehouse/deliveries")
    expect(page.locator("#deliveries")).to_contain_text("connection refused")
    screenshot(page, "deliveries")
    page.get_by_role("button", name="Retry").click()
    expect(page.locator("#deliveries")).to_contain_text("pending")


@ON_GITHUB
def test_sign_out_needs_the_form_and_next_stays_on_this_site(
    service: Service, env: ForgeEnv
) -> None:
    seeded(env)
    answer = service.client.post(
        "/signin",
        data=signin_form(service.client, token=WRITE, next="/\\evil.example/"),
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/", "no open redirect"
    answer = service.client.post(
        "/signin",
        data=signin_form(service.client, token=WRITE, next="//evil.example/"),
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/"
    assert service.client.cookies.get("mf_session")
    for form in ({}, {"csrf": "not-the-token"}):
        refused = service.client.post("/signout", data=form, follow_redirects=False)
        assert refused.status_code in (403, 422), refused.status_code
        assert service.client.get("/", follow_redirects=False).status_code == 200, "still in"
    missing = service.client.get("/projects/nope", headers={"Accept": "text/html"})
    assert missing.status_code == 403, "this token is for warehouse only"
    assert missing.headers["content-type"].startswith("text/html")
    assert "<title>" in missing.text
    assert service.client.get("/projects/nope").headers["content-type"] == (
        "application/problem+json"
    ), "programs get problem+json"


def signed_in_client(service: Service, token: str = WRITE) -> httpx.Client:
    """A plain HTTP client with a page session (for flows that need no browser)."""
    client = httpx.Client(base_url=service.client.base_url, timeout=30)
    answer = client.post("/signin", data=signin_form(client, token=token), follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return client


def signin_form(client: httpx.Client, **fields: str) -> dict[str, str]:
    """The sign-in form's fields with its login-CSRF token, as the sign-in page gives them
    (the page also sets the matching cookie in `client`)."""
    return {**fields, "csrf": csrf_of(client.get("/signin").text)}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


@ON_GITHUB
def test_a_session_ends_when_its_tokens_secret_is_replaced(service: Service, env: ForgeEnv) -> None:
    seeded(env)
    client = signed_in_client(service)
    assert client.get("/", follow_redirects=False).status_code == 200
    projects = service.state.projects
    service.state.projects = projects.model_copy(
        update={
            "tokens": tuple(
                t.model_copy(update={"token": SecretStr("a-new-secret-0001")})
                if t.name == "runner"
                else t
                for t in projects.tokens
            )
        }
    )
    try:
        answer = client.get("/", follow_redirects=False)
        assert answer.status_code == 303, "the old secret's session is over"
        assert answer.headers["location"].startswith("/signin")
    finally:
        service.state.projects = projects
        client.close()


@ON_GITHUB
def test_crlf_files_stay_crlf_and_odd_names_are_encoded_in_links(
    service: Service, env: ForgeEnv
) -> None:
    base = env.seed({"meltano.yml": MELTANO_YML, "c++.sql": b"select 1;\r\nselect 2;\r\n"})
    env.forge.create_branch("development", base)
    env.forge.create_branch("feat+x", base)
    client = signed_in_client(service)
    try:
        project = client.get("/projects/warehouse").text
        assert "edit?branch=feat%2Bx" in project
        editor = client.get("/projects/warehouse/edit", params={"path": "c++.sql"}).text
        assert "path=c%2B%2B.sql" in editor
        assert '<textarea id="content"' in editor
        answer = client.post(
            "/projects/warehouse/edit/commit",
            data={
                "csrf": csrf_of(editor),
                "branch": "development",
                "path": "c++.sql",
                "base": base,
                "content": "select 1;\r\nselect 2;\r\nselect 3;\r\n",
                "message": "Add a query",
            },
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        assert "draft=development%3Ac%2B%2B.sql" in answer.headers["location"]
        landed = env.forge.read_file(env.head("development") or "", "c++.sql")
        assert landed == b"select 1;\r\nselect 2;\r\nselect 3;\r\n"
    finally:
        client.close()


@ON_GITHUB
def test_settings_forms_refuse_secrets_from_lock_files_and_broken_yaml(
    service: Service, env: ForgeEnv
) -> None:
    lock = json.dumps(
        {"name": "example", "settings": [{"name": "account_secretless", "sensitive": True}]}
    ).encode()
    base = env.seed(
        {
            "meltano.yml": MELTANO_YML,
            "plugins/utilities/example--meltano.lock": lock,
        }
    )
    env.forge.create_branch("development", base)
    client = signed_in_client(service)
    try:
        form = client.get("/projects/warehouse/settings").text
        for field, value in (
            ("account_secretless", "x"),
            ("a_string", "postgresql://etl:hunter2@db/warehouse"),
            ("an_object", "{password: hunter2}"),
        ):
            answer = client.post(
                "/projects/warehouse/settings/setting",
                data={
                    "csrf": csrf_of(form),
                    "branch": "development",
                    "name": "example",
                    "field": field,
                    "value": value,
                },
            )
            assert answer.status_code == 200
            assert "secrets are never committed" in answer.text, field
        assert env.head("development") == base
        broken = env.forge.commit(
            "development",
            base,
            [FileChange.put("meltano.yml", b"a: 1\na: 2\n", base_mode=FileMode.REGULAR)],
            "duplicate keys",
        ).sha
        answer = client.post(
            "/projects/warehouse/settings/environment",
            data={"csrf": csrf_of(form), "branch": "development", "name": "qa"},
        )
        assert answer.status_code == 200, answer.text
        assert "Fix meltano.yml in the editor first" in answer.text
        assert env.head("development") == broken
    finally:
        client.close()


@ON_GITHUB
def test_a_leftover_setup_token_is_useless_once_projects_exist(
    service: Service, env: ForgeEnv
) -> None:
    seeded(env)
    leftover = setup_store.setup_token(service.settings, create=True)
    assert leftover is not None
    answer = service.client.post(
        "/setup/check",
        data={"setup_token": leftover, "name": "x", "provider": "local", "repo": "file:///x"},
    )
    assert answer.status_code == 403
    lines = startup_lines(service.state)
    assert all(leftover not in line for line in lines)
    assert setup_store.setup_token(service.settings, create=False) is None, "deleted at start"
