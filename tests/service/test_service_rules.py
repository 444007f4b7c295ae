"""The service holds the CLI's rules (issue 16, section 2), over real HTTP against the local
forge and the GitHub double: the secret guard on every commit and form, promotion into a
read-only branch, one read-only rule for the list, the branch, the editor and the commit,
tokens masked and server paths hidden on every way out, symlinks never edited as text."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from providers.contract import FileChange, FileMode
from tests.conftest import TOKEN, ForgeEnv
from tests.service.conftest import ADMIN, Service
from tests.service.test_web import MELTANO_YML, csrf_of, seeded, signed_in_client

LOCAL_AND_GITHUB = pytest.mark.parametrize("env", ["local", "github"], indirect=True)
ON_LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)
ON_GITHUB = pytest.mark.parametrize("env", ["github"], indirect=True)
PEM = (
    b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    b"-----END OPENSSH PRIVATE KEY-----\n"
)
GHP = "ghp_" + "A1b2C3d4E5" * 3 + "F6g7H8"
FINE_GRAINED = "github_pat_11ABCDEFG0123456789abc_" + "Z9y8X7w6V5" * 5 + "u4t3s2r1q"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def commit_body(branch: str, base: str, path: str, data: bytes) -> dict[str, object]:
    return {
        "branch": branch,
        "base_sha": base,
        "message": "m",
        "changes": [{"path": path, "content_base64": b64(data)}],
    }


@contextmanager
def forge_role(env: ForgeEnv, role: str) -> Iterator[None]:
    """The project's forge token with another role on the (session-wide) double."""
    assert env.double is not None
    before = env.double.roles[TOKEN]
    env.double.roles[TOKEN] = role
    try:
        yield
    finally:
        env.double.roles[TOKEN] = before


SECRET_FILES = [
    (".env", b"TAP_GITHUB_TOKEN=abc\n", "its name"),
    (".env.production", b"X=1\n", "its name"),
    (".ENV", b"X=1\n", "its name"),
    ("prod.env", b"X=1\n", "its name"),
    ("deploy/id_rsa", PEM, "its name"),
    ("deploy/key.txt", PEM, "a private key"),
    ("gcp-credentials.json", b"{}\n", "its name"),
    ("extract/keys.yml", b"aws: AKIAIOSFODNN7EXAMPLE\n", "an AWS access key id"),
    ("notes.md", f"token {GHP}\n".encode(), "a GitHub token"),
    ("auth.yml", f"auth_header: Bearer {FINE_GRAINED}\n".encode(), "a GitHub token"),
    ("db.yml", b"url: postgresql://etl:hunter2@db.internal/warehouse\n", "a password inside"),
]


@LOCAL_AND_GITHUB
def test_api_commits_refuse_secret_files_by_name_and_content(
    service: Service, env: ForgeEnv
) -> None:
    base = seeded(env)
    for path, data, why in SECRET_FILES:
        refused = service.post("/commits", json=commit_body("development", base, path, data))
        assert refused.status_code == 422, (path, refused.text)
        problem = refused.json()
        assert problem["title"] == "Secret refused"
        assert path in problem["detail"], path
        assert why in problem["detail"], path
        assert "hunter2" not in problem["detail"]
    assert env.head("development") == base, "nothing was committed"
    placeholder = b"url: postgresql://etl:${PG_PASSWORD}@db.internal/warehouse\n"
    ok = service.post("/commits", json=commit_body("development", base, "db.yml", placeholder))
    assert ok.status_code == 201, ok.text
    service.state.settings = service.settings.model_copy(update={"allow_secrets": ".env.example"})
    allowed = service.post(
        "/commits",
        json=commit_body("development", ok.json()["sha"], ".env.example", b"TOKEN=\n"),
    )
    assert allowed.status_code == 201, "the explicit allow list lets a path through"


@ON_GITHUB
def test_web_editor_and_settings_forms_refuse_secrets(service: Service, env: ForgeEnv) -> None:
    base = seeded(env)
    client = signed_in_client(service)
    try:
        form = client.get("/projects/warehouse/edit?branch=development&path=.env").text
        answer = client.post(
            "/projects/warehouse/edit/commit",
            data={
                "csrf": csrf_of(form),
                "branch": "development",
                "path": ".env",
                "base": base,
                "content": "TAP_TOKEN=abc\n",
                "message": "x",
            },
        )
        assert ".env was not committed: its name marks it as a secrets file" in answer.text
        settings = client.get("/projects/warehouse/settings").text
        for field, value in (
            ("start_date", GHP),
            ("auth_header", f"Bearer {FINE_GRAINED}"),
            ("pass", "hunter2"),
            ("pw", "hunter2"),
            ("db_passwd", "hunter2"),
        ):
            refused = client.post(
                "/projects/warehouse/settings/setting",
                data={
                    "csrf": csrf_of(settings),
                    "branch": "development",
                    "name": "example",
                    "field": field,
                    "value": value,
                },
            )
            assert "secrets are never committed" in refused.text, field
            assert f"&#39;{field}&#39;" in refused.text, "the message names the setting"
            assert "Put it in .env or an environment variable" in refused.text, field
        schedule = client.post(
            "/projects/warehouse/settings/schedule",
            data={
                "csrf": csrf_of(settings),
                "branch": "development",
                "name": "daily-load",
                "value": f"@daily {GHP}",
            },
        )
        assert "secrets are never committed" in schedule.text
    finally:
        client.close()
    assert env.head("development") == base
    assert GHP not in env.git("show", "development:meltano.yml")


@ON_LOCAL
def test_a_write_token_cannot_move_main_by_promotion_on_a_local_repository(
    service: Service, env: ForgeEnv
) -> None:
    base = seeded(env)
    evil = env.forge.commit(
        "development",
        base,
        [FileChange.put("meltano.yml", b"hijacked: true\n", base_mode=FileMode.REGULAR)],
        "evil",
    ).sha
    direct = service.post("/commits", json=commit_body("main", base, "meltano.yml", b"x: 1\n"))
    assert direct.status_code == 403
    refused = service.post("/promotions", json={"source": "development", "target": "main"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["title"] == "Promotion refused"
    assert "administrator" in refused.json()["detail"]
    client = signed_in_client(service)
    try:
        compare = client.get("/projects/warehouse/compare").text
        page = client.post(
            "/projects/warehouse/promote",
            data={"csrf": csrf_of(compare), "source": "development", "target": "main"},
        )
        assert page.status_code == 403
        assert "Ask an administrator to promote it" in page.text
    finally:
        client.close()
    assert env.head("main") == base, "main did not move"
    promoted = service.post(  # `hijacked` fails the check: an admin promotes it saying so
        "/promotions",
        token=ADMIN,
        json={"source": "development", "target": "main", "override_check": True},
    )
    assert promoted.status_code == 201, promoted.text
    assert promoted.json()["merged"]
    assert env.head("main") == evil


@ON_GITHUB
def test_a_writer_still_opens_a_pull_request_into_main(service: Service, env: ForgeEnv) -> None:
    base = seeded(env)
    env.forge.commit(
        "development",
        base,
        [FileChange.put("README.md", b"# changed\n", base_mode=FileMode.REGULAR)],
        "change",
    )
    opened = service.post("/promotions", json={"source": "development", "target": "main"})
    assert opened.status_code == 201, opened.text
    assert opened.json()["created"]
    assert not opened.json()["merged"]
    assert env.head("main") == base


@ON_GITHUB
def test_one_read_only_rule_for_the_list_the_branch_the_editor_and_the_commit(
    service: Service, env: ForgeEnv
) -> None:
    base = seeded(env)
    client = signed_in_client(service)

    def verdicts(name: str) -> tuple[bool, bool, bool]:
        listed = {b["name"]: b for b in service.get("/branches").json()}[name]["read_only"]
        one = service.get(f"/branches/{name}").json()["read_only"]
        editor = client.get(f"/projects/warehouse/edit?branch={name}").text
        return listed, one, 'id="read-only"' in editor

    try:
        with forge_role(env, "read"):  # the project's forge token may not push at all
            assert verdicts("development") == (True, True, True)
            refused = service.post(
                "/commits", json=commit_body("development", base, "a.sql", b"select 1\n")
            )
            assert refused.status_code == 403, "refused by the rule, not by the forge (502)"
            assert refused.json()["title"] == "Read-only branch"
        assert env.double is not None
        env.double.protected.setdefault(env.double_name, set()).add("release")  # type: ignore[attr-defined]
        env.forge.create_branch("release", base)
        with forge_role(env, "admin"):  # protected on the forge, and this token may push
            assert verdicts("release") == (False, False, False)
            landed = service.post(
                "/commits", json=commit_body("release", base, "a.sql", b"select 1\n")
            )
            assert landed.status_code == 201, landed.text
        assert verdicts("release") == (True, True, True), "a write token may not push there"
        assert verdicts("main") == (True, True, True)
        assert verdicts("development") == (False, False, False)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("echo", "echoed", "masked"),
    [
        (True, "request had Authorization", "token ***"),
        ("bare", "was refused", "credential *** was refused"),  # no header name to find
    ],
    ids=["header", "bare"],
)
@ON_GITHUB
def test_a_token_a_forge_echoes_is_masked_on_pages_and_in_the_api(
    service: Service, env: ForgeEnv, echo: bool | str, echoed: str, masked: str
) -> None:
    seeded(env)
    assert env.double is not None
    client = signed_in_client(service)
    env.double.echo_token = echo
    try:
        api = service.post("/promotions", json={"source": "ghost", "target": "main"})
        compare = client.get("/projects/warehouse/compare").text
        page = client.post(
            "/projects/warehouse/promote",
            data={"csrf": csrf_of(compare), "source": "ghost", "target": "main"},
        )
    finally:
        env.double.echo_token = False
        client.close()
    for text in (api.text, page.text):
        assert echoed in text, "the forge did echo it"
        assert TOKEN not in text
        assert masked in text


@ON_LOCAL
def test_no_promotion_or_page_shows_a_server_path(service: Service, env: ForgeEnv) -> None:
    base = seeded(env)
    env.forge.commit(
        "development",
        base,
        [FileChange.put("README.md", b"# changed\n", base_mode=FileMode.REGULAR)],
        "change",
    )
    promoted = service.post(
        "/promotions", token=ADMIN, json={"source": "development", "target": "main"}
    )
    assert promoted.status_code == 201, promoted.text
    assert promoted.json()["url"] == ""
    assert "fast-forwarded 'main'" in promoted.json()["detail"]
    client = signed_in_client(service, ADMIN)
    try:
        compare = client.get("/projects/warehouse/compare").text
        again = client.post(
            "/projects/warehouse/promote",
            data={"csrf": csrf_of(compare), "source": "development", "target": "main"},
        )
    finally:
        client.close()
    assert "already holds every commit" in again.text
    repo = str(env.repo_dir)
    for text in (promoted.text, again.text):
        assert repo not in text
        assert "file://" not in text


@LOCAL_AND_GITHUB
def test_the_editor_shows_a_symlink_as_a_link_and_never_rewrites_it(
    service: Service, env: ForgeEnv
) -> None:
    base = env.seed(
        {
            "meltano.yml": MELTANO_YML,
            "environments/dev.yml": (b"meltano.yml", FileMode.SYMLINK),
        }
    )
    env.forge.create_branch("development", base)
    client = signed_in_client(service)
    try:
        shown = client.get("/projects/warehouse/edit?branch=development&path=environments/dev.yml")
        assert shown.status_code == 200
        assert 'id="link-target">meltano.yml<' in shown.text
        assert 'id="content"' not in shown.text, "no text area for a link"
        assert "plugins:" not in shown.text.split('id="symlink"', 1)[1].split("</section>")[0]
        forced = client.post(
            "/projects/warehouse/edit/commit",
            data={
                "csrf": csrf_of(shown.text),
                "branch": "development",
                "path": "environments/dev.yml",
                "base": base,
                "content": "plugins: {}\n",
                "message": "x",
            },
        )
        assert "is a symbolic link to meltano.yml" in forced.text
    finally:
        client.close()
    assert env.head("development") == base, "nothing was committed"
    modes = env.git("ls-tree", "development", "environments/dev.yml")
    assert re.match(r"120000 blob ", modes), modes


def test_an_echoed_credential_header_is_masked_whoever_holds_the_token() -> None:
    """The masking is not tied to a registered token: any echoed credential header goes."""
    from service.problems import public  # the one redaction point (new in issue 16)

    echoed = "Validation Failed (request had Authorization: token glpat-unregistered-0123456789)"
    assert public(echoed) == "Validation Failed (request had Authorization: token ***)"
    assert public("PRIVATE-TOKEN: glpat-abcdefabcdefabcdefab") == "PRIVATE-TOKEN: ***"
    assert public("at /srv/repos/x.git", ("/srv/repos/x.git",)) == "at <repository>"


@LOCAL_AND_GITHUB
def test_a_writer_cannot_create_a_read_only_branch(service: Service, env: ForgeEnv) -> None:
    """Creating `main` or `master` (protected globs) sets what a read-only branch holds:
    refused below the admin role, as a commit there is; other branches stay open."""
    seeded(env)
    for name in ("master", "main"):
        refused = service.post("/branches", json={"name": name, "from_ref": "development"})
        assert refused.status_code == 403, refused.text
        assert "read-only" in refused.text.lower()
    assert env.head("master") is None
    opened = service.post("/branches", json={"name": "feature-x", "from_ref": "development"})
    assert opened.status_code == 201, opened.text
    made = service.post(
        "/branches", token=ADMIN, json={"name": "master", "from_ref": "development"}
    )
    assert made.status_code == 201, made.text
