"""The pages hold the CLI's rules, in a real browser (Chromium through Playwright): the
editor shows a symlink as a link, the settings form refuses a token pasted as a value, and
a write user cannot promote into `main` where the promotion is applied at once. The rest is
checked over plain HTTP in test_service_rules.py, which is much cheaper."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Dialog, Page, expect

from providers.contract import FileChange, FileMode
from tests.conftest import ForgeEnv
from tests.forges.github import GitHubDouble
from tests.service.conftest import Service, sign_in
from tests.service.test_web import MELTANO_YML, seeded

pytestmark = pytest.mark.slow
ON_LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)
ON_GITHUB = pytest.mark.parametrize("env", ["github"], indirect=True)
GHP = "ghp_" + "A1b2C3d4E5" * 3 + "F6g7H8"


@ON_LOCAL
def test_the_editor_shows_a_symlink_as_a_link(page: Page, service: Service, env: ForgeEnv) -> None:
    base = env.seed(
        {"meltano.yml": MELTANO_YML, "environments/dev.yml": (b"../meltano.yml", FileMode.SYMLINK)}
    )
    env.forge.create_branch("development", base)
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse/edit?branch=development")
    link = page.get_by_role("link", name="environments/dev.yml")
    expect(link.locator("xpath=..")).to_contain_text("(link)")
    link.click()
    expect(page.locator("#link-target")).to_have_text("../meltano.yml")
    expect(page.locator("#read-only")).to_contain_text("is a symbolic link to ../meltano.yml")
    expect(page.locator("textarea")).to_have_count(0)
    expect(page.get_by_role("button", name="Commit to development")).to_have_count(0)
    assert env.head("development") == base


@ON_GITHUB
def test_the_settings_form_refuses_a_token_pasted_as_a_value(
    page: Page, service: Service, env: ForgeEnv
) -> None:
    base = seeded(env)
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse/settings")
    page.get_by_label("Setting").fill("start_date")
    page.get_by_label("Value (not a secret)").fill(GHP)
    page.get_by_role("button", name="Set and commit").first.click()
    error = page.locator("#error")
    expect(error).to_contain_text("'start_date' of 'example' was not set")
    expect(error).to_contain_text("looks like a GitHub token")
    expect(error).to_contain_text("Put it in .env or an environment variable")
    assert env.head("development") == base


@ON_LOCAL
def test_a_write_user_cannot_promote_into_main_on_a_local_repository(
    page: Page, service: Service, env: ForgeEnv
) -> None:
    base = seeded(env)
    env.forge.commit(
        "development",
        base,
        [FileChange.put("meltano.yml", b"hijacked: true\n", base_mode=FileMode.REGULAR)],
        "evil",
    )
    url = sign_in(page, service)
    page.goto(f"{url}/projects/warehouse/compare")
    expect(page.get_by_role("button", name="Promote development to main")).to_be_disabled()
    expect(page.locator("#promote-refused")).to_contain_text("Ask an administrator")
    csrf = page.locator("input[name=csrf]").first.input_value()
    forced = page.request.post(
        f"{url}/projects/warehouse/promote",
        form={"csrf": csrf, "source": "development", "target": "main"},
    )
    assert forced.status == 403
    assert "protected in this project" in forced.text()
    assert env.head("main") == base, "main did not move"


@ON_GITHUB
def test_a_forge_that_answers_a_javascript_link_runs_no_script(
    page: Page, service: Service, env: ForgeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pull request's `html_url` is the forge's word: `javascript:` is shown as text, never
    made a link, and the pages' Content-Security-Policy runs no script but our own."""
    base = seeded(env)
    env.forge.commit(
        "development",
        base,
        [FileChange.put("meltano.yml", MELTANO_YML + b"# change\n", base_mode=FileMode.REGULAR)],
        "change",
    )
    payload = "javascript:alert(document.querySelector('[name=csrf]').value)"
    original = GitHubDouble.pull_json

    def hostile(self: GitHubDouble, request: Any, pr: dict[str, Any]) -> dict[str, Any]:
        return {**original(self, request, pr), "html_url": payload}

    monkeypatch.setattr(GitHubDouble, "pull_json", hostile)
    dialogs: list[str] = []

    def seen(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", seen)
    url = sign_in(page, service)
    answer = page.goto(f"{url}/projects/warehouse/compare")
    assert answer is not None
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    page.get_by_role("button", name="Promote development to main").click()
    shown = page.locator("#promoted a")
    expect(shown).to_have_text(payload)
    assert shown.get_attribute("href") == ""
    shown.click()
    page.wait_for_timeout(300)
    assert dialogs == [], "no script ran"
