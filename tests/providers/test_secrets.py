"""Tokens never reach a log record, an exception message or a repr."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from providers.contract import FileChange, FileMode
from providers.errors import AuthenticationFailed, Conflict, ProviderError
from providers.redaction import redact
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
