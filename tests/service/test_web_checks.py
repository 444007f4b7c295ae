"""The checks in a real browser: the project page's badge for each branch's latest check,
the findings page a commit status links to, and the one comment on the pull request as the
GitHub double's page renders it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ForgeEnv
from tests.service.checking import GOOD, Checked, checked_service
from tests.service.conftest import Receiver, screenshot, sign_in

pytestmark = pytest.mark.slow
ON_GITHUB = pytest.mark.parametrize("env", ["github"], indirect=True)
SECRET = "hunter2-not-a-real-one"
CHANGED = f"""\
default_environment: dev
environments:
- name: dev
  config:
    plugins:
      extractors:
      - name: tap-csv
        config:
          files: dev.csv
- name: prod
plugins:
  extractors:
  - name: tap-csv
    namespace: tap_csv
    pip_url: git+https://github.com/MeltanoLabs/tap-csv.git@main
    executable: tap-csv
    config:
      files: data.csv
      delimiter: ";"
  loaders:
  - name: target-postgres
    namespace: target_postgres
    pip_url: meltanolabs-target-postgres==0.1.0
    executable: target-postgres
    settings:
    - name: password
      kind: password
    config:
      host: db.internal
      password: {SECRET}
jobs:
- name: load
  tasks:
  - tap-csv target-jsonl
- name: "nightly `@data-team` <script>"
  tasks:
  - tap-csv target-postgres
schedules:
- name: nightly
  interval: '@daily'
  job: "nightly `@data-team` <script>"
""".encode()


@pytest.fixture
def checked(env: ForgeEnv, tmp_path: Path, receiver: Receiver) -> Iterator[Checked]:
    with checked_service(env, tmp_path, receiver.url) as made:
        yield made


@ON_GITHUB
def test_the_dashboard_badge_the_findings_page_and_the_pull_request_comment(
    page: Page, checked: Checked, env: ForgeEnv
) -> None:
    base = env.seed({"meltano.yml": GOOD}, branch="main")
    for branch in ("development", "feature"):
        env.forge.create_branch(branch, base)
    good = env.seed({"meltano.yml": GOOD, "README.md": b"# dev\n"}, "development", parent=base)
    head = env.seed({"meltano.yml": CHANGED}, branch="feature", parent=base, message="Postgres")
    number = env.forge.open_change_request("feature", "main", "Load into Postgres", "").number
    assert checked.push("development", base, good, "web-1").json()["status"] == "accepted"
    assert checked.pull_request("opened", number, head, "feature", "main", "web-2").json() == {
        "status": "accepted",
        "checks": 1,
    }
    assert checked.drain() == 2

    url = sign_in(page, checked.service)
    page.goto(f"{url}/projects/warehouse")
    rows = page.locator("#branches tr")
    expect(rows.filter(has_text="development").get_by_role("link", name="ok")).to_be_visible()
    failing = rows.filter(has_text="feature").get_by_role("link", name="failing")
    expect(failing).to_be_visible()
    failing.click()
    expect(page).to_have_url(f"{url}/projects/warehouse/checks/{head}")
    expect(page.locator("#verdict")).to_contain_text("failing")
    errors = page.locator("#errors-title + ul")
    expect(errors).to_contain_text("[job-task]")
    expect(errors).to_contain_text("target-jsonl")
    expect(errors).to_contain_text("password")
    expect(page.locator("#changes")).to_contain_text("Added loader target-postgres")
    expect(page.locator("#changes")).to_contain_text("Removed loader target-jsonl")
    expect(page.locator("#changes")).to_contain_text("nightly `@data-team` <script>")
    expect(page.locator("#settings-changed")).to_contain_text("setting password added")
    assert SECRET not in page.content()
    screenshot(page, "check-findings")

    assert env.double is not None
    page.goto(f"{env.double.url}/{env.double_name}/pull/{number}")
    expect(page.get_by_text("meltano-forge check failed")).to_be_visible()
    expect(page.get_by_text("Removed loader", exact=False)).to_be_visible()
    findings_links = "a[href^='https://forge.example.test/projects/warehouse/checks/']"
    assert page.locator(f".comment {findings_links}").count() == 1
    assert page.locator(".comment a").count() == 1, "no link but ours"
    [comment] = checked.comments(number)
    assert "``nightly `@data-team` <script>``" in comment["body"], "a name is a code span"
    assert SECRET not in page.content()
    screenshot(page, "pr-comment")
