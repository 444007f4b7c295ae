"""Promotion checks the source branch (issue 18, section 2), over real HTTP against the local
forge and the GitHub double: the API answers 422 with the findings for a branch that would
make its target fail, `override_check` is an admin's alone (403 for others), the compare
page shows the check and offers admins the explicit override as a plain form, and a
runner's `promote` in service mode hands the decision to the service."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from providers.contract import FileChange, FileMode
from tests.client.conftest import FIXTURES, PLUGIN, Runner
from tests.conftest import ForgeEnv
from tests.service.conftest import ADMIN, WRITE, Service, screenshot, sign_in
from tests.service.test_web import csrf_of, signed_in_client

LOCAL_AND_GITHUB = pytest.mark.parametrize("env", ["local", "github"], indirect=True)
ON_LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)
ON_GITHUB = pytest.mark.parametrize("env", ["github"], indirect=True)
MELTANO_YML = (FIXTURES / "meltano-config" / "meltano.yml").read_bytes() + PLUGIN.encode()
BROKEN_JOB = b"jobs:\n- name: load\n  tasks:\n  - tap-ghost target-ghost\n"
PROMOTE = {"source": "development", "target": "main"}


def project(env: ForgeEnv, development: bytes) -> tuple[str, str]:
    """main passes the check; development is one commit ahead with `development` as its
    meltano.yml. Both heads."""
    base = env.seed({"meltano.yml": MELTANO_YML, "README.md": b"# warehouse\n"})
    env.forge.create_branch("development", base)
    head = env.forge.commit(
        "development",
        base,
        [FileChange.put("meltano.yml", development, base_mode=FileMode.REGULAR)],
        "Change the project",
    ).sha
    return base, head


def pulls(env: ForgeEnv) -> int:
    """Pull requests opened on the double (0 on a local repository)."""
    if env.double is None:
        return 0
    return len(env.double.pulls.get(env.double_name, []))  # type: ignore[attr-defined]


@LOCAL_AND_GITHUB
def test_the_api_refuses_a_failing_branch_and_only_an_admin_may_override(
    service: Service, env: ForgeEnv
) -> None:
    base, head = project(env, MELTANO_YML + BROKEN_JOB)
    writer = WRITE if env.kind == "github" else ADMIN  # a local main moves at once: admins only

    refused = service.post("/promotions", token=writer, json=PROMOTE)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["title"] == "Check failed"
    detail = problem["detail"]
    assert "The check of 'development' fails with 1 error that 'main' does not have" in detail
    assert "meltano.yml:" in detail
    assert "[job-task]" in detail
    assert problem["check"]["sha"] == head
    assert problem["check"]["allowed"] is False
    assert [e["rule"] for e in problem["check"]["new_errors"]] == ["job-task"]
    assert env.forge.branch("main").head == base
    assert pulls(env) == 0

    for token in (WRITE, ADMIN) if env.kind == "github" else (ADMIN,):
        asked = service.post("/promotions", token=token, json=PROMOTE)
        assert asked.status_code == 422, "without the flag, the check decides for everyone"
    not_admin = service.post("/promotions", token=WRITE, json={**PROMOTE, "override_check": True})
    assert not_admin.status_code == 403, not_admin.text
    assert not_admin.json()["title"] == "Check override refused"
    assert "Only an administrator" in not_admin.json()["detail"]
    assert env.forge.branch("main").head == base
    assert pulls(env) == 0

    overridden = service.post("/promotions", token=ADMIN, json={**PROMOTE, "override_check": True})
    assert overridden.status_code == 201, overridden.text
    body = overridden.json()
    assert body["overridden"] is True
    assert body["check"]["ok"] is False
    assert body["check"]["errors"][0]["rule"] == "job-task"
    if env.kind == "local":
        assert body["merged"] is True
        assert env.forge.branch("main").head == head
    else:
        assert body["created"] is True
        assert pulls(env) == 1


@ON_GITHUB
def test_a_branch_that_passes_is_promoted_with_its_check(service: Service, env: ForgeEnv) -> None:
    _, head = project(env, MELTANO_YML + b"# a comment\n")
    opened = service.post("/promotions", token=WRITE, json=PROMOTE)
    assert opened.status_code == 201, opened.text
    body = opened.json()
    assert body["overridden"] is False
    assert body["check"] == {
        "sha": head,
        "target_sha": None,
        "ok": True,
        "allowed": True,
        "errors": [],
        "warnings": [],
        "new_errors": [],
        "base_errors": None,
    }
    asked = service.post("/promotions", token=WRITE, json={**PROMOTE, "override_check": True})
    assert asked.status_code == 403, "the flag is an admin's, whatever the check says"


@LOCAL_AND_GITHUB
def test_the_compare_page_shows_the_check_and_the_admins_explicit_override(
    service: Service, env: ForgeEnv
) -> None:
    base, head = project(env, MELTANO_YML + BROKEN_JOB)
    writer = signed_in_client(service, WRITE)
    admin = signed_in_client(service, ADMIN)
    try:
        page = writer.get("/projects/warehouse/compare").text
        assert 'id="check"' in page
        assert f"Check of development <code>{head[:12]}</code>" in page
        assert "1 error that main does not have" in page
        assert "meltano.yml:" in page
        assert "[job-task]" in page
        assert 'name="override_check"' not in page, "a write session is not offered the override"
        assert 'id="promote" disabled' in page
        if env.kind == "local":  # promoting into main moves it at once: that is an admin's
            assert "Ask an administrator to promote it." in page
        else:
            assert "ask an administrator to promote it although the check fails" in page
        forced = writer.post(
            "/projects/warehouse/promote",
            data={"csrf": csrf_of(page), **PROMOTE, "override_check": "true"},
        )
        assert forced.status_code == 403
        assert "Only an administrator" in forced.text

        page = admin.get("/projects/warehouse/compare").text
        assert 'name="override_check"' in page
        assert "promote although the check fails" in page
        assert "required" in page.split('name="override_check"', 1)[1].split(">", 1)[0]
        plain = admin.post("/projects/warehouse/promote", data={"csrf": csrf_of(page), **PROMOTE})
        assert plain.status_code == 422, "without the box ticked, the server refuses too"
        assert "The check of &#39;development&#39; fails" in plain.text
        assert env.forge.branch("main").head == base
        assert pulls(env) == 0
        ticked = admin.post(
            "/projects/warehouse/promote",
            data={"csrf": csrf_of(page), **PROMOTE, "override_check": "true"},
        )
        assert ticked.status_code == 200, ticked.text
        assert 'id="promoted"' in ticked.text
    finally:
        writer.close()
        admin.close()
    if env.kind == "local":
        assert env.forge.branch("main").head == head
    else:
        assert pulls(env) == 1


@ON_GITHUB
def test_the_compare_page_of_a_branch_that_passes(service: Service, env: ForgeEnv) -> None:
    project(env, MELTANO_YML + b"# a comment\n")
    client = signed_in_client(service, WRITE)
    try:
        page = client.get("/projects/warehouse/compare").text
    finally:
        client.close()
    assert "Meltano will load it: no errors, 0 warnings." in page
    assert 'name="override_check"' not in page
    assert 'id="promote" disabled' not in page


@ON_GITHUB
def test_a_runner_in_service_mode_leaves_the_override_to_the_service(
    service: Service, env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    base, _ = project(env, MELTANO_YML + BROKEN_JOB)
    run = Runner(env, tmp_path, no_git)
    run.base.update(
        MELTANO_FORGE_REPO=str(service.client.base_url).rstrip("/") + "/v1/projects/warehouse",
        MELTANO_FORGE_TOKEN=WRITE,
        MELTANO_FORGE_PROVIDER="",
        MELTANO_FORGE_API_URL="",
    )
    refused = run("promote")
    assert refused.returncode == 9, refused.stdout + refused.stderr
    assert "[job-task]" in refused.stdout
    assert "so nothing was promoted" in refused.stderr
    not_admin = run("promote", "--override-check")
    assert not_admin.returncode == 5, not_admin.stdout + not_admin.stderr
    assert "Only an administrator may promote a branch although its check fails" in (
        not_admin.stderr
    )
    assert pulls(env) == 0
    admin = run("promote", "--override-check", MELTANO_FORGE_TOKEN=ADMIN)
    assert admin.returncode == 0, admin.stdout + admin.stderr
    assert "the service allows it to admins only" in admin.stdout
    assert "opened " in admin.stdout
    assert pulls(env) == 1
    assert env.forge.branch("main").head == base


@pytest.mark.slow
@ON_GITHUB
def test_the_compare_page_in_a_browser(page: Page, service: Service, env: ForgeEnv) -> None:
    """Chromium: the check with its findings, and the override a plain form holds (the box is
    `required`, so the browser itself will not send the form without it)."""
    project(env, MELTANO_YML + BROKEN_JOB)
    url = sign_in(page, service, ADMIN)
    page.goto(f"{url}/projects/warehouse/compare")
    check = page.locator("#check")
    expect(check).to_contain_text("1 error that main does not have")
    expect(check.locator(".finding-error")).to_contain_text("[job-task]")
    expect(check.locator(".finding-error")).to_contain_text("meltano.yml:")
    box = page.get_by_label("promote although the check fails")
    expect(box).not_to_be_checked()
    screenshot(page, "compare-check")
    page.get_by_role("button", name="Promote development to main").click()
    expect(page).to_have_url(f"{url}/projects/warehouse/compare")
    assert pulls(env) == 0, "the browser did not send the form without the box"
    box.check()
    page.get_by_role("button", name="Promote development to main").click()
    expect(page.locator("#promoted")).to_contain_text("Opened")
    assert pulls(env) == 1


@ON_GITHUB
def test_a_runner_asks_no_override_for_a_branch_that_passes(
    service: Service, env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    project(env, MELTANO_YML + b"# a comment\n")
    run = Runner(env, tmp_path, no_git)
    run.base.update(
        MELTANO_FORGE_REPO=str(service.client.base_url).rstrip("/") + "/v1/projects/warehouse",
        MELTANO_FORGE_TOKEN=WRITE,
        MELTANO_FORGE_PROVIDER="",
        MELTANO_FORGE_API_URL="",
    )
    done = run("promote", "--override-check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "check of development" in done.stdout
    assert ": the check passes" in done.stdout
    assert pulls(env) == 1
