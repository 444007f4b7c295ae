"""What a change does to a Meltano project, compared before and after: plugins added or
removed, pip_url and variant changes, schedules, jobs and environments touched, and
settings changed, named but never shown (a value may be a secret written by mistake).

A pure function of two loaded projects (`client.check.project.load_project`), for the
service's pull-request comment and findings page; the names in it are repository content
and must be escaped by whoever shows them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from client.check.project import Entry, Project, singular
from providers.redaction import without_userinfo

PLUGIN_FIELDS = ("variant", "pip_url", "namespace", "inherit_from", "executable")
"""Plugin keys whose values are shown when they change (never `config`)."""
SCHEDULE_FIELDS = ("interval", "job", "extractor", "loader", "transform", "start_date")
ADDED, REMOVED, CHANGED = "added", "removed", "changed"


@dataclass(frozen=True)
class FieldChange:
    """One shown key of an entry, before and after (None when absent)."""

    field: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class EntryChange:
    """A plugin, job, schedule or environment added, removed or changed."""

    kind: str
    """`extractor`, ..., `job`, `schedule` or `environment`."""
    name: str
    change: str
    """`added`, `removed` or `changed`."""
    fields: tuple[FieldChange, ...] = ()
    """For `changed`: the shown keys that differ."""


@dataclass(frozen=True)
class SettingChange:
    """A setting value added, removed or changed: its name only, never the value."""

    setting: str
    change: str
    plugin_kind: str | None = None
    """`extractor`, ...; None for a project or environment `env` variable."""
    plugin: str | None = None
    environment: str | None = None
    """The environment that sets it, or None at the plugin (or project) level."""


@dataclass(frozen=True)
class ProjectChanges:
    """Everything a change does to the project, in reading order."""

    loaded_before: bool
    loaded_after: bool
    entries: tuple[EntryChange, ...] = ()
    settings: tuple[SettingChange, ...] = ()
    default_environment: FieldChange | None = None

    @property
    def empty(self) -> bool:
        """True when nothing Meltano reads changed."""
        return not (self.entries or self.settings or self.default_environment)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (stored with a check's result)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProjectChanges:
        """The changes as stored by `as_dict`."""
        default = data.get("default_environment")
        return cls(
            bool(data.get("loaded_before")),
            bool(data.get("loaded_after")),
            tuple(
                EntryChange(
                    e["kind"],
                    e["name"],
                    e["change"],
                    tuple(FieldChange(**f) for f in e.get("fields", ())),
                )
                for e in data.get("entries", ())
            ),
            tuple(SettingChange(**s) for s in data.get("settings", ())),
            FieldChange(**default) if default else None,
        )


@dataclass
class _Side:
    plugins: dict[tuple[str, str], Entry] = field(default_factory=dict)
    named: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    """(`job`/`schedule`/`environment`, name) -> its mapping."""


def _side(project: Project) -> _Side:
    side = _Side()
    for plugin in project.plugins():
        side.plugins.setdefault((plugin.kind, plugin.name), plugin)  # Meltano uses the first
    for kind in ("jobs", "schedules", "environments"):
        for entry in project.entries(kind):
            side.named.setdefault((singular(kind), entry.name), entry.data)
    return side


def shown_value(key: str, value: Any) -> str | None:
    """A shown key's value as text; a URL's credentials and query are masked (a pip_url
    may carry a token)."""
    if value is None:
        return None
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    text = str(value)
    if key != "pip_url":
        return text
    return " ".join(_masked_url(part) for part in text.split())


def _masked_url(part: str) -> str:
    part = without_userinfo(part)  # `name@git+URL`, `--index-url=URL`: wherever a URL is
    prefix, sep, rest = part.rpartition("+") if part.startswith("git+") else ("", "", part)
    if "://" not in rest:
        return part
    try:
        split = urllib.parse.urlsplit(rest)
    except ValueError:  # not a URL pip can read (`https://[host`): its user part is masked
        return part
    host = split.netloc.rpartition("@")[2]
    netloc = f"***@{host}" if "@" in split.netloc else host
    query = "***" if split.query else ""
    masked = urllib.parse.urlunsplit((split.scheme, netloc, split.path, query, split.fragment))
    return f"{prefix}{sep}{masked}"


def _fields(
    before: Mapping[str, Any], after: Mapping[str, Any], keys: tuple[str, ...]
) -> tuple[FieldChange, ...]:
    return tuple(
        FieldChange(key, shown_value(key, before.get(key)), shown_value(key, after.get(key)))
        for key in keys
        if before.get(key) != after.get(key)
    )


def flat_settings(config: Any, prefix: str = "") -> dict[str, Any]:
    """A plugin's `config` as Meltano names its settings (`an_object.foo`)."""
    flat: dict[str, Any] = {}
    if not isinstance(config, Mapping):
        return flat
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_settings(value, name + "."))
        else:
            flat[name] = value
    return flat


def _compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key in sorted(before.keys() | after.keys()):
        if key not in before:
            yield key, ADDED
        elif key not in after:
            yield key, REMOVED
        elif before[key] != after[key]:
            yield key, CHANGED


def _env(data: Mapping[str, Any] | None) -> dict[str, Any]:
    env = data.get("env") if data is not None else None
    return {str(k): v for k, v in env.items()} if isinstance(env, Mapping) else {}


def _environment_plugins(data: Mapping[str, Any] | None) -> dict[tuple[str, str], dict[str, Any]]:
    config = data.get("config") if data is not None else None
    plugins = config.get("plugins") if isinstance(config, Mapping) else None
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, items in (plugins if isinstance(plugins, Mapping) else {}).items():
        for item in items if isinstance(items, list) else []:
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                found.setdefault((str(kind), item["name"]), flat_settings(item.get("config")))
    return found


def _plugin_changes(before: _Side, after: _Side) -> Iterator[EntryChange | SettingChange]:
    for key in sorted(before.plugins.keys() | after.plugins.keys()):
        kind, name = singular(key[0]), key[1]
        old, new = before.plugins.get(key), after.plugins.get(key)
        if old is None:
            yield EntryChange(kind, name, ADDED)
        elif new is None:
            yield EntryChange(kind, name, REMOVED)
        else:
            changed = _fields(old.data, new.data, PLUGIN_FIELDS)
            if changed:
                yield EntryChange(kind, name, CHANGED, changed)
        old_config = flat_settings(old.data.get("config")) if old else {}
        new_config = flat_settings(new.data.get("config")) if new else {}
        if new is not None:  # an added plugin's settings are named too; a removed one's go
            for setting, how in _compare(old_config, new_config):
                yield SettingChange(setting, how, kind, name)


def _named_changes(before: _Side, after: _Side) -> Iterator[EntryChange | SettingChange]:
    shown = {"job": ("tasks",), "schedule": SCHEDULE_FIELDS, "environment": ()}
    for kind in ("job", "schedule", "environment"):
        keys = sorted(k for k in before.named.keys() | after.named.keys() if k[0] == kind)
        for key in keys:
            old, new = before.named.get(key), after.named.get(key)
            name = key[1]
            if old is None or new is None:
                yield EntryChange(kind, name, ADDED if old is None else REMOVED)
                continue
            fields = _fields(old, new, shown[kind])
            if kind == "job" and fields:
                fields = (FieldChange("tasks", _tasks(old), _tasks(new)),)
            settings: list[SettingChange] = []
            if kind == "environment":
                settings = [
                    SettingChange(v, how, environment=name)
                    for v, how in _compare(_env(old), _env(new))
                ]
                old_plugins, new_plugins = _environment_plugins(old), _environment_plugins(new)
                for plugin in sorted(old_plugins.keys() | new_plugins.keys()):
                    for setting, how in _compare(
                        old_plugins.get(plugin, {}), new_plugins.get(plugin, {})
                    ):
                        settings.append(
                            SettingChange(setting, how, singular(plugin[0]), plugin[1], name)
                        )
            if fields or (settings and kind == "environment") or old != new:
                yield EntryChange(kind, name, CHANGED, fields)
            yield from settings


def _tasks(job: Mapping[str, Any]) -> str:
    tasks = job.get("tasks")
    if isinstance(tasks, list):
        return " | ".join(
            str(t) if not isinstance(t, list) else " ".join(map(str, t)) for t in tasks
        )
    return str(tasks) if tasks is not None else ""


def summarize(before: Project, after: Project) -> ProjectChanges:
    """What `after` changes in `before` (two loaded projects; one that did not load counts
    as empty, and says so)."""
    old, new = _side(before), _side(after)
    entries: list[EntryChange] = []
    settings: list[SettingChange] = []
    for item in (*_plugin_changes(old, new), *_named_changes(old, new)):
        if isinstance(item, EntryChange):
            entries.append(item)
        else:
            settings.append(item)
    settings += [SettingChange(v, how) for v, how in _compare(_env(before.root), _env(after.root))]
    default = _fields(before.root, after.root, ("default_environment",))
    return ProjectChanges(
        bool(before.documents),
        bool(after.documents),
        tuple(entries),
        tuple(settings),
        default[0] if default else None,
    )
