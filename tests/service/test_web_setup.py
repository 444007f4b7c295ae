"""The initialization screen in a real browser: a service started with no project waits
at `/setup`, takes the one-time setup token it printed, checks access against the forge,
registers the project (its forge token in a 0600 file, never sent back), runs
`meltano init` into the empty repository, and signs the person in as admin."""

from __future__ import annotations

import re
import stat
import tempfile
import threading
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
from tests.forges.server import Fault
from tests.service.conftest import ADMIN, OTHER, LiveServer, Service, screenshot

pytestmark = pytest.mark.slow
LOCAL_AND_GITHUB = pytest.mark.parametrize("env", ["local", "github"], indirect=True)


@contextmanager
def bare_service(
    tmp_path: Path, meltano_bin: str, local_repos_dir: Path | None = None
) -> Iterator[Service]:
    """A service with no project configured at all; local repositories may be set up
    anywhere in the test's folder unless `local_repos_dir` says where."""
    settings = ServiceSettings(
        projects_file=None,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data",
        meltano_bin=meltano_bin,
        local_repos_dir=local_repos_dir or tmp_path,
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


def _setup_token(service: Service) -> str:
    startup_lines(service.state)
    token = setup_store.setup_token(service.settings, create=False)
    assert token is not None
    return token


def _session(service: Service, token: str) -> tuple[httpx.Client, str]:
    """A signed-in HTTP client and its session's CSRF token."""
    client = httpx.Client(base_url=service.client.base_url, timeout=30)
    signin = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").text)
    answer = client.post(
        "/signin",
        data={"token": token, "csrf": signin.group(1) if signin else ""},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
    assert csrf is not None
    return client, csrf.group(1)


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_a_project_scoped_admin_may_not_set_up_projects(service: Service, env: ForgeEnv) -> None:
    env.seed({"meltano.yml": b"version: 1\n"})
    scoped, csrf = _session(service, OTHER)  # an admin of project 'another' only
    form = {
        "csrf": csrf,
        "name": "borrowed",
        "provider": "local",
        "repo": f"file://{env.repo_dir}",  # the repository of 'warehouse'
        "initialize": "on",
    }
    assert scoped.get("/setup", follow_redirects=False).status_code == 403
    checked = scoped.post("/setup/check", data=form)
    assert checked.status_code == 403, checked.text
    assert "pending" not in checked.text
    saved = scoped.post("/setup/save", data={"csrf": csrf, "pending": "x"})
    assert saved.status_code == 403
    assert not service.settings.managed_projects_file.exists(), "nothing registered"
    assert [p.name for p in service.state.projects.projects] == ["warehouse"]

    admin, _ = _session(service, ADMIN)  # projects: ['*']
    assert admin.get("/setup", follow_redirects=False).status_code == 200
    scoped.close()
    admin.close()


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_local_repositories_live_under_the_named_folder_only(env: ForgeEnv, tmp_path: Path) -> None:
    env.seed({"meltano.yml": b"version: 1\n"})  # a real repository, outside the folder
    root = tmp_path / "repos"
    root.mkdir()
    (tmp_path / "empty").mkdir()
    (root / "link.git").symlink_to(env.repo_dir)  # inside, but it leads outside
    (tmp_path / "svc").mkdir()
    with bare_service(tmp_path / "svc", "meltano", local_repos_dir=root) as service:
        token = _setup_token(service)
        answers = []
        for repo in (
            f"file://{env.repo_dir}",  # holds a repository
            f"file://{tmp_path / 'missing' / 'x.git'}",  # does not exist
            f"file://{tmp_path / 'empty'}",  # an empty folder
            f"file://{root}/../{env.repo_dir.relative_to(tmp_path)}",  # climbs out
            f"file://{root / 'link.git'}",  # a symlink out
            f"file://{root}",  # the folder itself
        ):
            answer = service.client.post(
                "/setup/check",
                data={
                    "setup_token": token,
                    "name": "warehouse",
                    "provider": "local",
                    "repo": repo,
                    "initialize": "on",
                },
            )
            assert answer.status_code == 422, (repo, answer.text)
            error = re.search(r'id="error">([^<]*)<', answer.text)
            assert error is not None
            answers.append(error.group(1))
            assert "MELTANO_FORGE_LOCAL_REPOS_DIR" in error.group(1)
            assert str(env.repo_dir) not in error.group(1), "nothing said about the path"
        assert len(set(answers)) == 1, "the same answer whatever is at the outside path"
        assert not (tmp_path / "missing").exists()
        assert list((tmp_path / "empty").iterdir()) == [], "no repository was created"
        assert not service.settings.managed_projects_file.exists()

        inside = root / "warehouse.git"
        checked = service.client.post(
            "/setup/check",
            data={
                "setup_token": token,
                "name": "warehouse",
                "provider": "local",
                "repo": f"file://{inside}",
                "initialize": "on",
            },
        )
        assert checked.status_code == 200, checked.text
        assert "</code> will create the project" in checked.text
        assert not inside.exists(), "checking creates nothing"


BAD_NAMES = ("x;id", "--help", "../../etc", "a" * 300, "", "name with space", "é")


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_bad_names_and_branches_are_refused_up_front_with_the_rule(
    env: ForgeEnv, tmp_path: Path
) -> None:
    with bare_service(tmp_path, "meltano") as service:
        token = _setup_token(service)
        good = {
            "setup_token": token,
            "name": "warehouse",
            "provider": "local",
            "repo": f"file://{tmp_path / 'repos' / 'warehouse.git'}",
            "initialize": "on",
        }
        for name in BAD_NAMES:
            answer = service.client.post("/setup/check", data={**good, "name": name})
            assert answer.status_code == 422, (name, answer.status_code)
            assert "a project name is 1 to 64 letters" in answer.text
            assert 'id="setup"' in answer.text, "the form is shown again"
            assert not service.state.setups, "nothing waits to be saved"
        for field, value in (
            ("working_branch", "--help"),
            ("working_branch", "a..b"),
            ("working_branch", "x" * 3000),
            ("protected_branches", "main,ma in"),
            ("protected_branches", "main,-x"),
            ("provider", "service"),
            ("repo", "ftp://example.com/x"),
            ("api_url", "x" * 3000),
            ("forge_token", "x" * 3000),
        ):
            answer = service.client.post("/setup/check", data={**good, field: value})
            assert answer.status_code == 422, (field, value, answer.status_code)
            assert 'id="error"' in answer.text
        assert not service.settings.managed_projects_file.exists()
        assert not (tmp_path / "repos" / "warehouse.git").exists()


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_a_slow_forge_never_stalls_the_service(env: ForgeEnv, tmp_path: Path) -> None:
    assert env.double is not None
    repo, api_url, forge_token = _forge_fields(env)
    slow = Fault(method="GET", path=r"^/(api/v3/)?repos/[^/]+/[^/]+$", delay=5.0)
    env.double.inject(slow)
    with bare_service(tmp_path, "meltano") as service:
        token = _setup_token(service)
        answers: list[httpx.Response] = []

        def check() -> None:
            with httpx.Client(base_url=service.client.base_url, timeout=60) as client:
                answers.append(
                    client.post(
                        "/setup/check",
                        data={
                            "setup_token": token,
                            "name": "warehouse",
                            "provider": "github",
                            "repo": repo,
                            "api_url": api_url,
                            "forge_token": forge_token,
                        },
                    )
                )

        checking = threading.Thread(target=check)
        checking.start()
        while slow in env.double.faults:  # the forge has the request, and sits on it
            checking.join(0.01)
            assert checking.is_alive(), answers
        health = service.client.get("/healthz")
        assert health.status_code == 200
        assert not [e for e in env.double.log if re.search(slow.path or "", e.path)], (
            "/healthz answered while the forge still held the check"
        )
        checking.join(30)
        assert answers[0].status_code == 200, answers[0].text
        assert "Default branch" in answers[0].text


def test_readyz_declares_its_503() -> None:
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            ServiceSettings(
                database_url=f"sqlite:///{Path(folder) / 'spec.db'}", cache_dir=Path(folder)
            ),
            deliver=False,
        )
        responses = app.openapi()["paths"]["/readyz"]["get"]["responses"]
        app.state.service.close()
    assert "503" in responses
    assert "application/problem+json" in responses["503"]["content"]
