"""What a change does to a project (client/check/changes.py), on Meltano's own example
projects: what is named, and that no setting value ever appears."""

from __future__ import annotations

import json
from pathlib import Path

from client.check.changes import (
    EntryChange,
    FieldChange,
    ProjectChanges,
    SettingChange,
    summarize,
)
from client.check.project import Project, load_project
from client.check.project_files import MappingReader

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "meltano"


def project(files: dict[str, bytes]) -> Project:
    return load_project(MappingReader(files))


def manifest() -> dict[str, bytes]:
    root = FIXTURES / "meltano-manifest"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def edited(files: dict[str, bytes], path: str, old: str, new: str) -> dict[str, bytes]:
    text = files[path].decode()
    assert old in text, old
    return {**files, path: text.replace(old, new, 1).encode()}


def test_meltano_config_set_steps_name_the_plugin_and_settings_never_the_values() -> None:
    root = FIXTURES / "meltano-config"
    before = project({"meltano.yml": (root / "meltano.yml").read_bytes()})
    after = project({"meltano.yml": (root / "ending-meltano.yml").read_bytes()})
    changes = summarize(before, after)
    assert changes.entries == (EntryChange("utility", "example", "added"),)
    assert [(s.setting, s.change) for s in changes.settings] == [
        ("a_number", "added"),
        ("a_string", "added"),
        ("an_array", "added"),
        ("an_integer", "added"),
        ("an_object.foo", "added"),
    ]
    stored = json.dumps(changes.as_dict())
    for value in ("-86.75", "3.1415", "42", "bar"):
        assert value not in stored


def test_the_same_project_changes_nothing() -> None:
    files = manifest()
    assert summarize(project(files), project(dict(files))).empty


def test_a_change_across_include_files_is_summarized_entry_by_entry() -> None:
    before = manifest()
    after = edited(
        before,
        "extractors.meltano.yml",
        "  - name: tap-cloudwatch\n    variant: meltanolabs\n"
        "    pip_url: git+https://github.com/meltanolabs/tap-cloudwatch.git@0.0.1\n",
        "  - name: tap-cloudwatch\n    variant: other\n"
        "    pip_url: git+https://user:ghp_secret@github.com/x/tap-cloudwatch.git@0.0.2\n",
    )
    after = edited(
        after, "extractors.meltano.yml", "aws_region_name: us-west-2", "aws_region_name: eu-west-1"
    )
    after = edited(
        after, "orchestrators.meltano.yml", "interval: 0 12 * * *", "interval: '@hourly'"
    )
    after = edited(after, "environments/prod.meltano.yml", "user: MELTANO", "user: SOMEONE")
    after = edited(
        after,
        "environments/prod.meltano.yml",
        "        config:\n          thread_lookback_days: 7\n",
        "",
    )
    after = edited(
        after,
        "orchestrators.meltano.yml",
        "jobs:\n",
        "jobs:\n- name: brand_new\n  tasks:\n  - tap-github target-yaml\n",
    )
    changes = summarize(project(before), project(after))

    assert (
        EntryChange(
            "extractor",
            "tap-cloudwatch",
            "changed",
            (
                FieldChange("variant", "meltanolabs", "other"),
                FieldChange(
                    "pip_url",
                    "git+https://github.com/meltanolabs/tap-cloudwatch.git@0.0.1",
                    "git+https://***@github.com/x/tap-cloudwatch.git@0.0.2",
                ),
            ),
        )
        in changes.entries
    )
    assert EntryChange("job", "brand_new", "added") in changes.entries
    assert (
        EntryChange(
            "schedule",
            "slack_notifications",
            "changed",
            (FieldChange("interval", "0 12 * * *", "@hourly"),),
        )
        in changes.entries
    )
    assert (
        SettingChange("aws_region_name", "changed", "extractor", "tap-cloudwatch")
        in changes.settings
    )
    assert (
        SettingChange("user", "changed", "extractor", "tap-snowflake", "prod") in changes.settings
    )
    assert (
        SettingChange("thread_lookback_days", "removed", "extractor", "tap-slack-public", "prod")
        in changes.settings
    )
    assert EntryChange("environment", "prod", "changed") in changes.entries
    stored = json.dumps(changes.as_dict())
    for value in ("eu-west-1", "SOMEONE", "ghp_secret", "user:"):
        assert value not in stored


def test_plugins_removed_and_a_project_that_does_not_load() -> None:
    before = manifest()
    after = edited(
        before, "loaders.meltano.yml", "- name: target-yaml", "- name: target-yaml-renamed"
    )
    changes = summarize(project(before), project(after))
    assert EntryChange("loader", "target-yaml", "removed") in changes.entries
    assert EntryChange("loader", "target-yaml-renamed", "added") in changes.entries
    broken = summarize(project(before), project({**before, "meltano.yml": b"plugins: [\n"}))
    assert (broken.loaded_before, broken.loaded_after) == (True, False)


def test_the_summary_round_trips_through_its_stored_form() -> None:
    root = FIXTURES / "meltano-config"
    changes = summarize(
        project({"meltano.yml": (root / "meltano.yml").read_bytes()}),
        project({"meltano.yml": (root / "ending-meltano.yml").read_bytes()}),
    )
    assert ProjectChanges.from_dict(json.loads(json.dumps(changes.as_dict()))) == changes


def test_credentials_in_a_pip_url_are_never_shown_in_any_form() -> None:
    """`name@git+URL` and `--index-url=URL` carried their user part into the summary (and
    so into a pull request's comment)."""
    before = b"version: 1\nplugins:\n  extractors:\n  - name: tap-x\n    pip_url: tap-x==1.0\n"
    secrets = ("tok3n-in-user", "hunter2pass", "ghp_inTheUserPartOnly0123456789abcdefghij")
    for pip_url in (
        f"tap-x@git+https://user:{secrets[1]}@github.com/o/r.git",
        f"tap-x --index-url=https://u:{secrets[0]}@pypi.example/simple",
        f"git+https://{secrets[2]}@github.com/o/r.git@main",
    ):
        after = before.replace(b"tap-x==1.0", pip_url.encode())
        said = json.dumps(
            summarize(project({"meltano.yml": before}), project({"meltano.yml": after})).as_dict()
        )
        assert not any(s in said for s in secrets), said
        assert "***@" in said
