"""Common Meltano changes made without raw YAML: a plugin's setting value, a schedule's
interval, a new environment. Each is a minimal change to the file, made with round-trip
YAML (ruamel.yaml): comments, key order and quoting elsewhere are kept as they were."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from client import bounded_yaml
from client.guard import SecretRefused, is_secret_setting, secret_in
from providers.errors import InvalidRequest


def _yaml() -> YAML:
    yaml = YAML()  # round-trip mode: comments and order survive
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=2, offset=0)
    return yaml


def _load(text: bytes) -> CommentedMap:
    try:
        bounded_yaml.check_text(text)  # ruamel composes aliases and nesting unbounded
    except bounded_yaml.YamlRefused as exc:
        raise InvalidRequest(str(exc), "Fix meltano.yml in the editor first") from None
    try:
        document = _yaml().load(text)
    except YAMLError as exc:
        msg = f"meltano.yml is not YAML these forms can edit: {exc}".splitlines()[0]
        raise InvalidRequest(msg, "Fix meltano.yml in the editor first") from None
    if not isinstance(document, CommentedMap):
        msg = "meltano.yml is not a mapping"
        raise InvalidRequest(msg, "Fix meltano.yml in the editor first")
    return document


def _dump(document: CommentedMap) -> bytes:
    out = io.StringIO()
    _yaml().dump(document, out)
    return out.getvalue().encode()


def _plugin(document: CommentedMap, name: str) -> CommentedMap:
    for items in (document.get("plugins") or {}).values():
        for item in items or []:
            if isinstance(item, CommentedMap) and item.get("name") == name:
                return item
    msg = f"meltano.yml has no plugin named '{name}'"
    raise InvalidRequest(msg, "Pick one of the project's plugins")


def _secret(plugin: CommentedMap, setting: str, locked: list[Any]) -> bool:
    """Whether `setting` is a secret: by meltano.yml's own definition, else the plugin's lock
    file (Meltano's `sensitive` and `kind: password`), else by its name."""
    for definitions in (plugin.get("settings") or [], locked):
        for definition in definitions:
            if isinstance(definition, dict) and definition.get("name") == setting:
                return definition.get("kind") in ("password", "oauth") or bool(
                    definition.get("sensitive")
                )
    return is_secret_setting(setting)


def _carries_secret(value: Any) -> str | None:
    """What secret a value carries: a secret-named key in a mapping or list, or a string
    holding a credential (a token, a key, a URL with a password), as the guard sees it."""
    if isinstance(value, dict):
        for key, item in value.items():
            if is_secret_setting(str(key)):
                return f"its key '{key}' names a secret"
            found = _carries_secret(item)
            if found:
                return found
        return None
    if isinstance(value, list):
        return next((found for item in value if (found := _carries_secret(item))), None)
    kind = secret_in(value.encode("utf-8", "surrogateescape")) if isinstance(value, str) else None
    return f"its value looks like {kind}" if kind else None


def _refuse_secret(what: str, value: str) -> None:
    why = _carries_secret(value)
    if why:
        msg = f"{what} was not set: {why}, and secrets are never committed"
        raise SecretRefused(msg, "Put it in .env or an environment variable, not in meltano.yml")


def _value(text: str) -> Any:
    """A form's value as YAML reads it (numbers, booleans, lists), a string otherwise."""
    try:
        bounded_yaml.check_text(text, "The value")  # an alias bomb is not a value
    except bounded_yaml.YamlTooLarge as exc:
        raise InvalidRequest(str(exc), "Write the value out in full") from None
    except bounded_yaml.YamlRefused:
        return text
    try:
        return _yaml().load(text) if text.strip() else ""
    except Exception:  # noqa: BLE001 - anything YAML cannot read is simply a string
        return text


def set_setting(
    text: bytes, plugin: str, setting: str, value: str, locked: list[Any] | None = None
) -> bytes:
    """`plugins.<type>[name].config.<setting>: value`; secrets are refused. `locked` is the
    plugin's setting definitions from its lock file, when the project has one."""
    document = _load(text)
    item = _plugin(document, plugin)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", setting):
        msg = f"'{setting}' is not a setting name"
        raise InvalidRequest(msg, "Use the setting's name as `meltano config list` shows it")
    parsed = _value(value)
    named = "it is a secret setting" if _secret(item, setting, locked or []) else None
    why = named or _carries_secret(parsed) or _carries_secret(value)
    if why:
        msg = f"'{setting}' of '{plugin}' was not set: {why}, and secrets are never committed"
        raise SecretRefused(msg, "Put it in .env or an environment variable, not in meltano.yml")
    config = item.get("config")
    if not isinstance(config, CommentedMap):
        config = CommentedMap()
        item["config"] = config
    config[setting] = parsed
    return _dump(document)


def locked_settings(lock: bytes) -> list[Any]:
    """The setting definitions in a plugin's lock file (`plugins/<type>/<name>--<variant>.lock`)."""
    try:
        data = json.loads(lock)
    except (ValueError, RecursionError):  # a `[[[...` lock file holds no settings
        return []
    settings = data.get("settings") if isinstance(data, dict) else None
    return settings if isinstance(settings, list) else []


def set_schedule_interval(text: bytes, schedule: str, interval: str) -> bytes:
    """`schedules[name].interval: interval`."""
    _refuse_secret(f"The interval of '{schedule}'", interval)
    document = _load(text)
    for item in document.get("schedules") or []:
        if isinstance(item, CommentedMap) and item.get("name") == schedule:
            item["interval"] = interval.strip()
            return _dump(document)
    msg = f"meltano.yml has no schedule named '{schedule}'"
    raise InvalidRequest(msg, "Pick one of the project's schedules")


def add_environment(text: bytes, name: str) -> bytes:
    """Append `{name: <name>}` to `environments`."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        msg = f"'{name}' is not an environment name Meltano accepts"
        raise InvalidRequest(msg, "Use letters, digits, '-', '_' and '.'")
    _refuse_secret("The environment's name", name)
    document = _load(text)
    environments = document.get("environments")
    if not isinstance(environments, CommentedSeq):
        environments = CommentedSeq()
        document["environments"] = environments
    if any(isinstance(e, CommentedMap) and e.get("name") == name for e in environments):
        msg = f"The environment '{name}' already exists"
        raise InvalidRequest(msg, "Choose another name")
    environments.append(CommentedMap(name=name))
    return _dump(document)


def choices(text: bytes) -> dict[str, list[str]]:
    """The names the forms offer: plugins, schedules, environments."""
    try:
        document = _load(text)
    except InvalidRequest:
        return {"plugins": [], "schedules": [], "environments": []}
    return {
        "plugins": [
            str(item.get("name"))
            for items in (document.get("plugins") or {}).values()
            for item in items or []
            if isinstance(item, CommentedMap) and item.get("name")
        ],
        "schedules": [
            str(s.get("name"))
            for s in document.get("schedules") or []
            if isinstance(s, CommentedMap)
        ],
        "environments": [
            str(e.get("name"))
            for e in document.get("environments") or []
            if isinstance(e, CommentedMap)
        ],
    }
