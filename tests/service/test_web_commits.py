"""Pages that commit one file (the editor, its pull, the settings forms) go through one
operation: the file keeps its mode and its CRLF line ends, and a change that changes
nothing commits nothing, whichever page asks. Every page that changes something checks
its CSRF token in one dependency, before anything else is read. Over real HTTP, no browser."""

from __future__ import annotations

import html
import re

import httpx
import pytest
from fastapi.routing import APIRoute

from providers.contract import FileChange, FileMode
from service.web import editor as editor_pages
from service.web import overview, review, setup
from tests.conftest import ForgeEnv
from tests.service.conftest import Service
from tests.service.test_web import MELTANO_YML, csrf_of, signed_in_client

pytestmark = pytest.mark.slow
ON_GITHUB = pytest.mark.parametrize("env", ["github"], indirect=True)
LOCAL_AND_GITHUB = pytest.mark.parametrize("env", ["local", "github"], indirect=True)
QUERY = b"select 1;\r\nselect 2;\r\nselect 3;\r\n"


def draft_of(page: str) -> str:
    """The editor's textarea, as a browser would send it back (CRLF line ends)."""
    found = re.search(r'<textarea id="content"[^>]*>\n(.*?)</textarea>', page, re.DOTALL)
    assert found is not None, page
    return html.unescape(found.group(1)).replace("\r\n", "\n").replace("\n", "\r\n")


def editor(client: httpx.Client, path: str) -> str:
    answer = client.get("/projects/warehouse/edit", params={"branch": "development", "path": path})
    assert answer.status_code == 200, answer.text
    return answer.text


@LOCAL_AND_GITHUB
def test_a_pull_into_a_crlf_draft_merges_as_the_commit_would(
    service: Service, env: ForgeEnv
) -> None:
    base = env.seed({"meltano.yml": MELTANO_YML, "q.sql": QUERY})
    env.forge.create_branch("development", base)
    client = signed_in_client(service)
    try:
        csrf = csrf_of(editor(client, "q.sql"))
        moved = env.forge.commit(
            "development",
            base,
            [FileChange.put("q.sql", QUERY + b"select 4;\r\n", base_mode=FileMode.REGULAR)],
            "another query",
        ).sha
        pulled = client.post(
            "/projects/warehouse/edit/pull",
            data={
                "csrf": csrf,
                "branch": "development",
                "path": "q.sql",
                "base": base,
                "content": "select one;\r\nselect 2;\r\nselect 3;\r\n",
            },
        )
        assert pulled.status_code == 200, pulled.text
        assert "&lt;&lt;&lt;&lt;&lt;&lt;&lt;" not in pulled.text, "a clean merge, no markers"
        draft = draft_of(pulled.text)
        assert draft == "select one;\r\nselect 2;\r\nselect 3;\r\nselect 4;\r\n"
        answer = client.post(
            "/projects/warehouse/edit/commit",
            data={
                "csrf": csrf,
                "branch": "development",
                "path": "q.sql",
                "base": moved,
                "content": draft,
                "message": "Name the first",
            },
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        landed = env.forge.read_file(env.head("development") or "", "q.sql")
        assert landed == b"select one;\r\nselect 2;\r\nselect 3;\r\nselect 4;\r\n"
    finally:
        client.close()


@ON_GITHUB
def test_a_settings_form_keeps_the_files_mode_and_crlf_line_ends(
    service: Service, env: ForgeEnv
) -> None:
    crlf = MELTANO_YML.replace(b"\n", b"\r\n")
    base = env.seed({"meltano.yml": (crlf, FileMode.EXECUTABLE)})
    env.forge.create_branch("development", base)
    client = signed_in_client(service)
    try:
        form = client.get("/projects/warehouse/settings").text
        answer = client.post(
            "/projects/warehouse/settings/schedule",
            data={
                "csrf": csrf_of(form),
                "branch": "development",
                "name": "daily-load",
                "value": "@hourly",
            },
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        head = env.head("development") or ""
        landed = env.forge.read_file(head, "meltano.yml")
        assert b"@hourly" in landed
        assert landed.count(b"\r\n") == landed.count(b"\n"), "every line keeps its CRLF"
        modes = {e.path: e.mode for e in env.forge.list_tree(head)}
        assert modes["meltano.yml"] is FileMode.EXECUTABLE
    finally:
        client.close()


@ON_GITHUB
def test_a_settings_form_that_changes_nothing_commits_nothing(
    service: Service, env: ForgeEnv
) -> None:
    base = env.seed({"meltano.yml": MELTANO_YML})
    env.forge.create_branch("development", base)
    client = signed_in_client(service)
    try:
        form = client.get("/projects/warehouse/settings").text
        answer = client.post(
            "/projects/warehouse/settings/schedule",
            data={
                "csrf": csrf_of(form),
                "branch": "development",
                "name": "daily-load",
                "value": "@daily",
            },
            follow_redirects=False,
        )
        assert answer.status_code == 200, answer.text
        assert "Nothing to commit" in answer.text
        assert env.head("development") == base, "no empty commit"
    finally:
        client.close()


@ON_GITHUB
def test_every_page_that_changes_something_refuses_a_form_without_its_csrf_token(
    service: Service, env: ForgeEnv
) -> None:
    base = env.seed({"meltano.yml": MELTANO_YML})
    env.forge.create_branch("development", base)
    posts = [
        route.path
        for module in (overview, editor_pages, review, setup)
        for route in module.router.routes
        if isinstance(route, APIRoute)
        and "POST" in (route.methods or set())
        and route.path not in ("/signin", "/setup/check", "/setup/save")
    ]
    assert len(posts) >= 7, posts
    filled = {
        "branch": "development",
        "path": "meltano.yml",
        "base": base,
        "content": "a: 1\n",
        "message": "x",
        "name": "qa",
        "source": "development",
        "target": "main",
    }
    client = signed_in_client(service)
    try:
        for path in posts:
            url = path.replace("{project}", "warehouse").replace("{kind}", "environment")
            url = url.replace("{delivery_id}", "1")
            for offered in ({}, {"csrf": "not-the-token"}):
                answer = client.post(url, data={**filled, **offered}, follow_redirects=False)
                assert answer.status_code == 403, (path, offered, answer.status_code)
                assert "CSRF" in answer.text, (path, answer.text)
        assert env.head("development") == base
        assert env.head("main") == base
    finally:
        client.close()
