"""The initialization screen in a real browser: a service started with no project waits
at `/setup`, takes the one-time setup token it printed, checks access against the forge,
registers the project (its forge token in a 0600 file, never sent back), runs
`meltano init` into the empty repository, and signs the person in as admin."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from service.app import build_state, create_app, startup_lines
from service.settings import ServiceSettings
from service.web import setup_store
from tests.client.conftest import meltano_dir
from tests.conftest import ForgeEnv
from tests.service.conftest import LiveServer, Service, screenshot

pytestmark = pytest.mark.slow
LOCAL_AND_GITHUB = pytest.mark.parametrize("env", ["local", "github"], indirect=True)


@contextmanager
def bare_service(tmp_path: Path, meltano_bin: str) -> Iterator[Service]:
    """A service with no project configured at all."""
    settings = ServiceSettings(
        projects_file=None,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data",
        meltano_bin=meltano_bin,
    )
    state = build_state(settings)
    app = create_app(settings, state=state, deliver=False)
    with LiveServer(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield Service(client, state, settings, app)
    state.close()


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Service]:
    with bare_service(tmp_path, str(meltano_dir() / "meltano")) as service:
        yield service


def _forge_fields(env: ForgeEnv) -> tuple[str, str, str]:
    """(repository URL, API URL, forge token) as a person would paste them."""
    config = env.make_config()
    if env.kind == "local":
        return f"file://{env.repo_dir}", "", ""
    assert config.token is not None
    return config.location.web_url, config.location.api_url, config.token.get_secret_value()


@LOCAL_AND_GITHUB
def test_setup_registers_and_initializes_an_empty_repository(
    page: Page, bare: Service, env: ForgeEnv
) -> None:
    lines = startup_lines(bare.state)
    assert "no project is configured yet" in lines[0]
    token = setup_store.setup_token(bare.settings, create=False)
    assert token is not None
    assert token in lines[1], "the setup token is printed at first start"
    token_file = bare.settings.data_dir / setup_store.SETUP_TOKEN_FILE
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert startup_lines(bare.state)[1] == lines[1], "a restart prints the same token"

    url = str(bare.client.base_url).rstrip("/")
    page.goto(f"{url}/")
    expect(page).to_have_url(f"{url}/setup")
    page.goto(f"{url}/signin")
    expect(page).to_have_url(f"{url}/setup")

    repo, api_url, forge_token = _forge_fields(env)
    page.get_by_label("Setup token").fill(token)
    page.get_by_label("Project name").fill("warehouse")
    page.get_by_label("Provider").select_option(env.kind)
    page.get_by_label("Repository URL").fill(repo)
    page.get_by_label("API URL").fill(api_url)
    page.get_by_label("Forge token").fill(forge_token)
    page.get_by_label("Run meltano init").check()
    screenshot(page, "setup")
    page.get_by_role("button", name="Check access").click()

    found = page.locator("#found")
    expect(found).to_contain_text("Default branch")
    expect(found).to_contain_text("the repository is empty")
    expect(found).to_contain_text("meltano init will create the project")
    assert env.head("main") is None, "checking changes nothing"
    assert not bare.settings.managed_projects_file.exists(), "nothing is saved before Save"
    assert token not in page.content(), "the setup token is not echoed back"
    if forge_token:
        assert forge_token not in page.content(), "the forge token never goes back"
    holder = next(c for c in page.context.cookies() if c["name"] == "mf_setup")
    assert holder["httpOnly"]
    assert holder["sameSite"] == "Strict"
    screenshot(page, "setup-checked")
    page.get_by_role("button", name="Save warehouse").click()

    expect(page.locator("#initialized")).to_contain_text("from meltano init", timeout=120_000)
    admin_token = page.locator("#admin-token").inner_text()
    assert admin_token.startswith("mf-")
    if forge_token:
        assert forge_token not in page.content()
    names = set(env.git("ls-tree", "-r", "--name-only", "main").split())
    assert "meltano.yml" in names
    assert env.head("development") == env.head("main")

    managed = bare.settings.managed_projects_file
    assert stat.S_IMODE(managed.stat().st_mode) == 0o600
    secret = bare.settings.data_dir / "secrets" / "warehouse.token"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text().strip() == forge_token
    if forge_token:
        assert forge_token not in managed.read_text(), "the projects list holds a path only"
    assert not token_file.exists(), "the setup token is spent"

    page.get_by_role("link", name="Open warehouse").click()
    expect(page.get_by_role("heading", name="Branches")).to_be_visible()
    expect(page.locator("#branches")).to_contain_text("development")

    refused = bare.client.post(
        "/setup/check",
        data={"setup_token": token, "name": "again", "provider": "local", "repo": "file:///x"},
    )
    assert refused.status_code == 403
    api = bare.client.get("/v1/projects", headers={"Authorization": f"Bearer {admin_token}"})
    assert api.status_code == 200
    assert [p["name"] for p in api.json()] == ["warehouse"]


@LOCAL_AND_GITHUB
def test_setup_needs_the_setup_token_or_an_admin(page: Page, bare: Service, env: ForgeEnv) -> None:
    startup_lines(bare.state)
    repo, api_url, forge_token = _forge_fields(env)
    form = {
        "name": "warehouse",
        "provider": env.kind,
        "repo": repo,
        "api_url": api_url,
        "forge_token": forge_token,
        "initialize": "on",
    }
    for offered in ("", "setup-wrong"):
        answer = bare.client.post("/setup/check", data={**form, "setup_token": offered})
        assert answer.status_code == 403
    answer = bare.client.post("/setup/save", data={"pending": "x", "setup_token": "setup-wrong"})
    assert answer.status_code == 403
    assert not bare.settings.managed_projects_file.exists()
    assert env.head("main") is None


def test_a_missing_local_repository_is_created_only_when_asked(
    page: Page, bare: Service, tmp_path: Path
) -> None:
    startup_lines(bare.state)
    token = setup_store.setup_token(bare.settings, create=False)
    assert token is not None
    url = str(bare.client.base_url).rstrip("/")
    target = tmp_path / "new" / "warehouse.git"
    page.goto(f"{url}/setup")
    page.get_by_label("Setup token").fill(token)
    page.get_by_label("Project name").fill("warehouse")
    page.get_by_label("Provider").select_option("local")
    page.get_by_label("Repository URL").fill(f"file://{target}")
    page.get_by_role("button", name="Check access").click()
    expect(page.locator("#error")).to_contain_text("There is no git repository")
    assert not target.exists()
    expect(page.locator("#setup-token-given")).to_be_visible()
    page.get_by_label("Run meltano init").check()
    page.get_by_role("button", name="Check access").click()
    expect(page.locator("#found")).to_contain_text("meltano init will create the project")
    assert not target.exists(), "checking creates nothing"
    page.get_by_role("button", name="Save warehouse").click()
    expect(page.locator("#initialized")).to_contain_text("from meltano init", timeout=120_000)
    assert (target / "HEAD").exists(), "Save created the repository"


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_a_failed_meltano_init_registers_nothing_and_can_be_saved_again(
    env: ForgeEnv, tmp_path: Path
) -> None:
    with bare_service(tmp_path, str(tmp_path / "no-meltano-here")) as service:
        startup_lines(service.state)
        token = setup_store.setup_token(service.settings, create=False)
        assert token is not None
        repo, api_url, forge_token = _forge_fields(env)
        checked = service.client.post(
            "/setup/check",
            data={
                "setup_token": token,
                "name": "warehouse",
                "provider": "github",
                "repo": repo,
                "api_url": api_url,
                "forge_token": forge_token,
                "initialize": "on",
            },
        )
        assert checked.status_code == 200, checked.text
        pending = re.search(r'name="pending" value="([^"]+)"', checked.text)
        assert pending is not None
        for _ in range(2):
            saved = service.client.post("/setup/save", data={"pending": pending.group(1)})
            assert saved.status_code == 200
            assert "was not found" in saved.text
            assert "Install Meltano" in saved.text
            assert not service.settings.managed_projects_file.exists(), "nothing registered"
            assert setup_store.setup_token(service.settings, create=False) == token
            assert env.head("main") is None
