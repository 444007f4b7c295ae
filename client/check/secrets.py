"""Secrets written as literals in `meltano.yml` or an include file: errors.

A literal value for a setting that its definition (in the project, or in the plugin's lock
file under `plugins/`) marks `sensitive` or `kind: password` is committed for everyone with
read access; so is any value in the secret guard's token formats, whatever its key. Not
literals: `$VAR`/`${VAR}` references, and a value equal to the setting's own published
default (Hub definitions sometimes mark a harmless setting `kind: password` and give it a
default).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from client.check.located_yaml import Located
from client.check.project import Entry, Project
from client.guard import is_secret_setting, secret_in

_REFERENCE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")


class _Setting:
    """What the check needs of a setting's definition."""

    __slots__ = ("default", "secret", "sure")

    def __init__(self, secret: bool, sure: bool, default: Any) -> None:
        self.secret, self.sure, self.default = secret, sure, default


def _marks(setting: dict[str, Any], name: str, in_project: bool) -> tuple[bool, bool]:
    """(secret, sure): `kind: password`, or `sensitive` written in the project, is sure;
    `sensitive` from a published definition is sure only for a secret-like name (the Hub
    marks `view_id` and `record_key_property_name` sensitive, and real projects write
    them)."""
    password = setting.get("kind") == "password"
    sensitive = bool(setting.get("sensitive"))
    return password or sensitive, password or (
        sensitive and (in_project or is_secret_setting(name))
    )


def _definitions(project: Project, plugin: Entry) -> dict[str, _Setting]:
    """The plugin's settings by name: its parents' first, each lock file before the
    project's own definitions (Meltano lets the project override a definition)."""
    chain: list[Entry] = []
    current: Entry | None = plugin
    while current is not None and all(current is not c for c in chain) and len(chain) < 16:
        chain.append(current)
        parent = current.data.get("inherit_from")
        current = project.plugin(plugin.kind, parent) if isinstance(parent, str) else None
    found: dict[str, _Setting] = {}
    for entry in reversed(chain):
        lock = project.lock_for(entry) or {}
        for source, in_project in (
            (lock.get("settings"), False),
            (entry.data.get("settings"), True),
        ):
            for setting in source if isinstance(source, list) else ():
                if not isinstance(setting, dict) or not isinstance(setting.get("name"), str):
                    continue
                name = setting["name"]
                old = found.get(name)
                secret, sure = _marks(setting, name, in_project)
                if old is not None and "sensitive" not in setting and "kind" not in setting:
                    secret, sure = old.secret, old.sure
                default = setting.get("value", old.default if old else None)
                found[name] = _Setting(secret, sure, default)
    return found


def _flat(config: Any, prefix: str = "") -> Iterator[tuple[str, Any, int | None]]:
    """A config mapping as (dotted name, value, line), nested keys included."""
    if not isinstance(config, dict):
        return
    for key, value in config.items():
        name = f"{prefix}{key}"
        line = config.line_of(key) if isinstance(config, Located) else None
        yield name, value, line
        if isinstance(value, dict):
            yield from _flat(value, name + ".")


def _is_literal(value: Any, setting: _Setting) -> bool:
    if value is None or value == "" or isinstance(value, bool | dict | list):
        return False
    if isinstance(value, str) and _REFERENCE.search(value):
        return False
    return setting.default is None or value != setting.default


def _configs(project: Project) -> Iterator[tuple[Entry, Any, str]]:
    """Every plugin's `config`, top-level and per environment, with its file."""
    for plugin in project.plugins():
        yield plugin, plugin.data.get("config"), plugin.file
    for env in project.entries("environments"):
        config = env.data.get("config")
        groups = config.get("plugins") if isinstance(config, dict) else None
        for kind, items in groups.items() if isinstance(groups, dict) else ():
            for item in items if isinstance(items, list) else ():
                name = item.get("name") if isinstance(item, dict) else None
                target = project.plugin(kind, name) if isinstance(name, str) else None
                if target is not None:
                    yield target, item.get("config"), env.file


def _sensitive_literals(project: Project) -> None:
    for plugin, config, file in _configs(project):
        definitions = _definitions(project, plugin)
        for name, value, line in _flat(config):
            setting = definitions.get(name)
            if setting is None or not setting.secret or not _is_literal(value, setting):
                continue
            variable = f"{plugin.name}_{name}".upper().replace("-", "_").replace(".", "_")
            record = project.error if setting.sure else project.warn
            record(
                "literal-secret",
                file,
                line,
                f"the setting '{name}' of {plugin.what} is "
                + ("sensitive" if setting.sure else "marked sensitive by its definition")
                + ", and its value is written here in plain text",
                f"Remove it and set {variable} in .env or the runner's environment "
                f"(or write {name}: ${{{variable}}})",
            )


def _strings(node: Any, line: int) -> Iterator[tuple[str, int]]:
    """Every string in a document (keys and values), with the nearest line known."""
    if isinstance(node, dict):
        for key, value in node.items():
            at = node.line_of(key) if isinstance(node, Located) else line
            if isinstance(key, str):
                yield key, at
            yield from _strings(value, at)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, item.line if isinstance(item, Located) else line)
    elif isinstance(node, str):
        yield node, line


def _tokens(project: Project) -> None:
    for path, doc in project.documents.items():
        for text, line in _strings(doc, doc.line):
            kind = secret_in(text.encode())
            if kind is not None:
                project.error(
                    "token",
                    path,
                    line,
                    f"this value looks like {kind}, written in plain text",
                    "Revoke it, remove it, and set it through an environment variable "
                    "(.env or the runner's environment), referenced as ${VARIABLE}",
                )


def check_secrets(project: Project) -> None:
    """Both secret rules, recorded on the project."""
    _sensitive_literals(project)
    _tokens(project)
