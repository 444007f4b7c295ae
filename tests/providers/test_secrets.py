"""Tokens never reach a log record, an exception message or a repr."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from client.guard import SecretGuard, is_secret_setting, secret_in
from providers.contract import FileChange, FileMode
from providers.errors import AuthenticationFailed, Conflict, ProviderError
from providers.redaction import protect_logs, redact
from tests.conftest import TOKEN, ForgeEnv


def chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


@pytest.mark.parametrize("env", ["github", "github-graphql", "gitlab"], indirect=True)
def test_tokens_stay_out_of_logs_errors_and_reprs(
    env: ForgeEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    errors: list[BaseException] = []
    base = env.seed({"meltano.yml": b"v: 1\n"})
    forge = env.new_forge()
    with forge.archive("main") as snapshot:
        list(snapshot.entries)
    forge.commit(
        "main", base, [FileChange.put("meltano.yml", b"v: 2\n", base_mode=FileMode.REGULAR)], "edit"
    )
    try:
        forge.commit(
            "main",
            base,
            [FileChange.put("meltano.yml", b"v: 3\n", base_mode=FileMode.REGULAR)],
            "stale",
        )
    except Conflict as exc:
        errors.append(exc)
    wrong = env.new_forge(token=SecretStr(TOKEN[::-1]))
    with pytest.raises(AuthenticationFailed) as denied:
        wrong.branch("main")
    errors.append(denied.value)
    anonymous = env.new_forge(token=None)
    with pytest.raises(ProviderError) as anon:
        anonymous.branch("main")
    errors.append(anon.value)

    texts = [r.getMessage() for r in caplog.records]
    texts += [str(e) for exc in errors for e in chain(exc)] + [
        repr(e) for exc in errors for e in chain(exc)
    ]
    texts += [repr(forge), repr(env.make_config()), str(env.make_config())]
    assert len(caplog.records) > 5, "the SDKs did log"
    leaked = [t for t in texts if TOKEN in t or TOKEN[::-1] in t]
    assert leaked == []
    codeload = [t for t in texts if "_codeload" in t and "token=" in t]
    assert all("token=***" in t for t in codeload)


def test_redact_masks_known_secrets_and_query_tokens() -> None:
    assert (
        redact("GET /x?token=abc123&y=1 Bearer s3cret", {"s3cret"})
        == "GET /x?token=***&y=1 Bearer ***"
    )
    assert redact("private_token=zzz") == "private_token=***"


def test_an_echoed_credential_header_is_masked_in_text_and_in_log_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    echoed = "Validation Failed (request had Authorization: token glpat-never-registered-0123)"
    assert redact(echoed) == "Validation Failed (request had Authorization: token ***)"
    assert redact("Authorization: Bearer abc.def.ghi, next") == "Authorization: Bearer ***, next"
    assert redact('{"PRIVATE-TOKEN": "glpat-zzzzzzzzzzzzzzzzzzzz"}') == '{"PRIVATE-TOKEN": "***"}'
    protect_logs()
    with caplog.at_level(logging.INFO):
        logging.getLogger("tests.echo").info("forge said: %s", echoed)
    assert "glpat-never-registered" not in caplog.text
    assert "token ***" in caplog.text


# The secret guard: one guard for the client's workspace changes and the service's
# (path, bytes) commits and form values.

GHP = "ghp_" + "A1b2C3d4E5" * 3 + "F6g7H8"
TOKENS = [
    (GHP, "a GitHub token"),
    ("gho_" + "x" * 36, "a GitHub token"),
    ("ghs_" + "Z" * 36, "a GitHub token"),
    ("github_pat_11ABCDEFG0123456789abc_" + "Z9y8X7w6V5" * 5 + "u4t3s2r1q", "a GitHub token"),
    ("glpat-" + "a1B2c3D4e5" * 2, "a GitLab token"),
    ("glpat-" + "a1B2c3D4e5" * 3 + "xyz", "a GitLab token"),
    ("gldt-" + "k" * 20, "a GitLab token"),
    ("glrt-" + "k" * 24, "a GitLab token"),
    ("glptt-" + "0" * 40, "a GitLab token"),
    ("glsoat-" + "q" * 20, "a GitLab token"),
    ("AKIAIOSFODNN7EXAMPLE", "an AWS access key id"),
    ("ASIAIOSFODNN7EXAMPLE", "an AWS access key id"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "an AWS secret access key",
    ),
    ('"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"', "an AWS secret access key"),
    ("AIzaSyA-1234567890abcdefghijklmnopqrstu", "a Google API key"),
    (
        '{"type": "service_account", "project_id": "p", "private_key_id": "1",'
        ' "private_key": "MIIEvQIBADANBg"}',
        "a Google Cloud service-account key",
    ),
    ("xoxb-123456789012-abcdefABCDEF", "a Slack token"),
    ("xoxp-123456789012-abcdefABCDEF", "a Slack token"),
    ("xapp-1-A0123456789-abcdef", "a Slack token"),
    ("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXX", "a Slack webhook URL"),
    ("-----BEGIN RSA PRIVATE KEY-----", "a private key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "a private key"),
    ("-----BEGIN PGP PRIVATE KEY BLOCK-----", "a private key"),
    ("sqlalchemy_url: postgresql://etl:hunter2@db/warehouse", "a password inside a URL"),
    ("https://oauth2:glpat@gitlab.example.com/group/repo.git", "a password inside a URL"),
]


@pytest.mark.parametrize(("text", "kind"), TOKENS)
def test_the_guard_knows_each_published_token_format(text: str, kind: str) -> None:
    assert secret_in(f"config:\n  value: {text}\n".encode()) == kind
    assert SecretGuard().reason("extract/settings.yml", text.encode()) == (
        f"it holds what looks like {kind}"
    )


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://etl@db/warehouse",
        "postgresql://etl:${PG_PASSWORD}@db/warehouse",
        "postgresql://$USER:$PASSWORD@db/warehouse",
        "postgresql://{{ user }}:{{ password }}@db",
        "postgresql://etl:****@db/warehouse",
        "https://github.com/meltano/meltano",
        "ghp_short",
        "glpat-tooshort",
        "start_date: '2020-01-01T00:00:00Z'",
    ],
)
def test_the_guard_lets_placeholders_and_ordinary_values_through(text: str) -> None:
    assert secret_in(text.encode()) is None


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".ENV",
        ".env.production",
        "prod.env",
        "config/Staging.ENV",
        "deploy/id_rsa",
        "deploy/ID_ED25519",
        "gcp-credentials.json",
        "tls/server.PEM",
        ".netrc",
    ],
)
def test_secret_file_names_match_without_regard_to_case(path: str) -> None:
    assert SecretGuard().reason(path, b"harmless\n") == "its name marks it as a secrets file"


def test_the_allow_list_and_extra_globs_are_the_same_for_names_and_contents() -> None:
    guard = SecretGuard(extra_globs=("*.secret.yml",), allowed=(".env.example", "docs/*.md"))
    assert guard.reason(".env.example", b"TOKEN=\n") is None
    assert guard.reason("docs/tokens.md", f"looks like {GHP}".encode()) is None
    assert guard.reason("prod.secret.yml", b"a: 1\n") == "its name marks it as a secrets file"
    assert guard.reason("meltano.yml", b"a: 1\n") is None


def test_no_real_meltano_project_file_is_flagged() -> None:
    root = Path(__file__).resolve().parents[1] / "fixtures"
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) > 30
    guard = SecretGuard()
    flagged = [
        (str(p.relative_to(root)), why)
        for p in files
        if (why := guard.reason(str(p.relative_to(root)), p.read_bytes()))
    ]
    assert flagged == []


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("pass", True),
        ("pw", True),
        ("passwd", True),
        ("db_pass", True),
        ("user_pw", True),
        ("password", True),
        ("client_secret", True),
        ("api_key", True),
        ("authorization", True),
        ("start_date", False),
        ("bypass_cache", False),
        ("auth_method", False),
        ("username", False),
        ("stream_maps", False),
    ],
)
def test_secret_setting_names(name: str, secret: bool) -> None:
    assert is_secret_setting(name) is secret
