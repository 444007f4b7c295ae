"""Sessions over real HTTP: removing a token from the projects file ends its bearer access
and its sessions without a restart; the sign-in form refuses posts that did not come from
its own page (login CSRF); MELTANO_FORGE_SECURE_COOKIES=always marks every cookie Secure
behind a TLS proxy that uvicorn does not trust."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Page, expect

from service.app import build_state, create_app
from service.settings import ServiceSettings
from tests.conftest import ForgeEnv
from tests.service.conftest import (
    ADMIN,
    READ,
    WRITE,
    LiveServer,
    Receiver,
    Service,
    projects_file,
    sign_in,
)

LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)


def _signin_csrf(client: httpx.Client) -> str:
    """The sign-in page's form token (its cookie lands in `client`); "" when it has none."""
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").text)
    return found.group(1) if found else ""


def _signed_in(service: Service, token: str) -> httpx.Client:
    client = httpx.Client(base_url=service.client.base_url, timeout=30)
    answer = client.post(
        "/signin", data={"token": token, "csrf": _signin_csrf(client)}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return client


def _edit(path: Path, change: Any) -> None:
    """Rewrite the projects file as an operator would (a real edit on disk)."""
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def _bearer(service: Service, token: str) -> int:
    answer = service.client.get(
        "/v1/projects/warehouse", headers={"Authorization": f"Bearer {token}"}
    )
    return answer.status_code


@LOCAL
def test_removing_a_token_from_the_projects_file_ends_its_access_without_a_restart(
    service: Service, env: ForgeEnv, caplog: pytest.LogCaptureFixture
) -> None:
    env.seed({"meltano.yml": b"version: 1\n"})
    assert service.settings.projects_file is not None
    path = service.settings.projects_file
    browser = _signed_in(service, WRITE)
    assert browser.get("/", follow_redirects=False).status_code == 200
    assert _bearer(service, WRITE) == 200
    removed: list[dict[str, Any]] = []

    def remove_runner(data: dict[str, Any]) -> None:
        removed.extend(t for t in data["tokens"] if t["name"] == "runner")
        data["tokens"] = [t for t in data["tokens"] if t["name"] != "runner"]

    _edit(path, remove_runner)
    assert _bearer(service, WRITE) == 401, "bearer access ends at once"
    answer = browser.get("/", follow_redirects=False)
    assert answer.status_code == 303, "the session ends at once"
    assert answer.headers["location"].startswith("/signin")
    live = browser.get("/v1/projects/warehouse/branches", headers={"Accept": "application/json"})
    assert live.status_code == 401, "the session cookie no longer stands for the token"
    again = httpx.Client(base_url=service.client.base_url, timeout=30)
    refused = again.post(
        "/signin", data={"token": WRITE, "csrf": _signin_csrf(again)}, follow_redirects=False
    )
    assert refused.status_code == 200
    assert "not known to this service" in refused.text
    assert _bearer(service, READ) == 200, "other tokens stay"

    _edit(path, lambda data: data["tokens"].extend(removed))
    assert _bearer(service, WRITE) == 200, "a token added back works without a restart"

    path.write_text("tokens: [unclosed\n")
    with caplog.at_level(logging.ERROR, logger="service.auth"):
        assert _bearer(service, WRITE) == 200, "a broken edit keeps the last good projects"
        assert _bearer(service, READ) == 200
    assert "previous projects stay in force" in caplog.text
    assert WRITE not in caplog.text
    browser.close()
    again.close()


@LOCAL
def test_sign_in_needs_the_form_of_this_site(service: Service) -> None:
    client = httpx.Client(base_url=service.client.base_url, timeout=30)
    for form in ({"token": ADMIN}, {"token": ADMIN, "csrf": "guessed"}):
        refused = client.post("/signin", data=form, follow_redirects=False)
        assert refused.status_code == 403, refused.text
        assert "came from another site" in refused.text
        assert "mf_session" not in refused.headers.get("set-cookie", "")
    other = httpx.Client(base_url=service.client.base_url, timeout=30)
    foreign = _signin_csrf(other)
    _signin_csrf(client)  # this browser's own pre-session cookie differs from `foreign`
    refused = client.post("/signin", data={"token": ADMIN, "csrf": foreign}, follow_redirects=False)
    assert refused.status_code == 403, "another browser's form token is not this one's"
    form_cookie = next(
        h for h in client.get("/signin").headers.get_list("set-cookie") if "mf_signin" in h
    )
    assert "HttpOnly" in form_cookie
    assert "SameSite=strict" in form_cookie or "SameSite=Strict" in form_cookie
    answer = client.post(
        "/signin", data={"token": ADMIN, "csrf": _signin_csrf(client)}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert client.cookies.get("mf_session")
    client.close()
    other.close()


@LOCAL
def test_a_cross_site_sign_in_form_is_refused_in_chromium(page: Page, service: Service) -> None:
    url = str(service.client.base_url).rstrip("/")
    page.goto(f"{url}/signin")  # the browser holds a sign-in cookie of its own
    page.set_content(
        f'<form method="post" action="{url}/signin">'
        f'<input name="token" value="{ADMIN}"><button>go</button></form>'
    )
    page.get_by_role("button", name="go").click()
    expect(page.locator("body")).to_contain_text("came from another site")
    assert not [c for c in page.context.cookies() if c["name"] == "mf_session"]
    sign_in(page, service, READ)
    assert [c for c in page.context.cookies() if c["name"] == "mf_session"]


@contextmanager
def _service(tmp_path: Path, env: ForgeEnv, receiver: Receiver, **extra: Any) -> Iterator[str]:
    settings = ServiceSettings(
        projects_file=projects_file(tmp_path, env, receiver.url),
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data",
        **extra,
    )
    state = build_state(settings)
    try:
        with LiveServer(create_app(settings, state=state, deliver=False)) as url:
            yield url
    finally:
        state.close()


def _cookies(answer: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in answer.headers.get_list("set-cookie")}


@LOCAL
def test_secure_cookies_can_be_forced_behind_an_untrusted_tls_proxy(
    env: ForgeEnv, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MELTANO_FORGE_SECURE_COOKIES", "always")
    assert ServiceSettings().secure_cookies == "always"
    monkeypatch.delenv("MELTANO_FORGE_SECURE_COOKIES")
    with (
        _service(tmp_path, env, receiver, secure_cookies="always") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        form = client.get("/signin", headers={"X-Forwarded-Proto": "https"})
        signin_cookie = _cookies(form)["mf_signin"]
        assert "Secure" in signin_cookie, "the request came over http, yet Secure is forced"
        nonce = signin_cookie.split(";", 1)[0].split("=", 1)[1]
        signed = client.post(
            "/signin",
            data={"token": ADMIN, "csrf": nonce},
            headers={"Cookie": f"mf_signin={nonce}"},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        assert "Secure" in _cookies(signed)["mf_session"]
    with (
        _service(_folder(tmp_path / "auto"), env, receiver) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        assert "Secure" not in _cookies(client.get("/signin"))["mf_signin"], (
            "auto follows the scheme uvicorn reports"
        )


def _folder(path: Path) -> Path:
    path.mkdir()
    return path
