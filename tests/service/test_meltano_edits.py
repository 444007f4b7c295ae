"""The settings forms' YAML edits on Meltano's own example project: one small change,
comments and order kept, secrets refused whatever shape they come in."""

from __future__ import annotations

import difflib

import pytest

from providers.errors import InvalidRequest
from service import meltano_edits
from tests.client.conftest import FIXTURES, PLUGIN

PROJECT = (
    (FIXTURES / "meltano-config" / "meltano.yml").read_bytes()
    + PLUGIN.encode()
    + (b"schedules:\n- name: daily-load  # the nightly one\n  interval: '@daily'\n  job: load\n")
)


def changed_lines(before: bytes, after: bytes) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(
            before.decode().splitlines(), after.decode().splitlines(), lineterm="", n=0
        )
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_a_setting_is_one_added_block_and_keeps_every_comment() -> None:
    after = meltano_edits.set_setting(PROJECT, "example", "a_string", "hello")
    assert changed_lines(PROJECT, after) == ["+    config:", "+      a_string: hello"]
    again = meltano_edits.set_setting(after, "example", "a_string", "bye")
    assert changed_lines(after, again) == ["-      a_string: hello", "+      a_string: bye"]
    assert b"# Use this environment when adding" in again
    typed = meltano_edits.set_setting(PROJECT, "example", "an_integer", "42")
    assert b"an_integer: 42\n" in typed


def test_schedules_and_environments() -> None:
    after = meltano_edits.set_schedule_interval(PROJECT, "daily-load", "0 3 * * *")
    assert changed_lines(PROJECT, after) == ["-  interval: '@daily'", "+  interval: '0 3 * * *'"]
    assert b"# the nightly one" in after
    added = meltano_edits.add_environment(PROJECT, "qa")
    assert changed_lines(PROJECT, added) == ["+- name: qa"]
    with pytest.raises(InvalidRequest, match="already exists"):
        meltano_edits.add_environment(PROJECT, "dev")
    with pytest.raises(InvalidRequest, match="not an environment name"):
        meltano_edits.add_environment(PROJECT, "qa: {x")
    with pytest.raises(InvalidRequest, match="no schedule"):
        meltano_edits.set_schedule_interval(PROJECT, "hourly", "@hourly")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("password", "x"),
        ("client_secret", "x"),
        ("api_key", "x"),
        ("apikey", "x"),
        ("db_passwd", "x"),
        ("pwd", "x"),
        ("sqlalchemy_url", "sqlite:///x.db"),
        ("dsn", "x"),
        ("a_string", "postgresql://etl:hunter2@db:5432/warehouse"),
        ("an_object", "{nested: {password: hunter2}}"),
        ("an_array", "[{token: abc}]"),
    ],
)
def test_secrets_are_refused_in_any_shape(setting: str, value: str) -> None:
    with pytest.raises(InvalidRequest, match="secrets are never committed"):
        meltano_edits.set_setting(PROJECT, "example", setting, value)


def test_a_lock_files_sensitive_setting_is_a_secret() -> None:
    locked = meltano_edits.locked_settings(
        b'{"settings": [{"name": "account", "sensitive": true}, {"name": "role"}]}'
    )
    with pytest.raises(InvalidRequest, match="secrets are never committed"):
        meltano_edits.set_setting(PROJECT, "example", "account", "x", locked)
    assert b"role: analyst" in meltano_edits.set_setting(
        PROJECT, "example", "role", "analyst", locked
    )
    assert meltano_edits.locked_settings(b"not json") == []


@pytest.mark.parametrize("text", [b"a: 1\na: 2\n", b"a: [\n", b"- a list\n"])
def test_yaml_the_forms_cannot_edit_says_where_to_fix_it(text: bytes) -> None:
    with pytest.raises(InvalidRequest, match=r"Fix meltano\.yml in the editor first"):
        meltano_edits.add_environment(text, "qa")
