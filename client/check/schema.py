"""Meltano's own published JSON schema for `meltano.yml`, applied to every project file.

The schema is vendored from Meltano (MIT, see `LICENSE-meltano`, version in
`meltano.schema.version`) and refreshed by `scripts/refresh_meltano_schema.py`: it is never
hand-written here. It is read and compiled once, on first use, so a check on the fixtures
stays well under the 0.3 s target. YAML gives dates and timestamps where Meltano's JSON view
has strings, so values are brought to their JSON form before validation.
"""

from __future__ import annotations

import datetime
import json
from functools import cache
from importlib import resources
from typing import Any

from client.check.located_yaml import Located
from client.check.project import MELTANO_YML, Project
from client.check.result import Finding, Severity

MAX_PER_FILE = 20
"""Schema errors reported per file: the first few say what is wrong."""


@cache
def _validator() -> Any:
    """The compiled validator (jsonschema imported only when a check runs)."""
    import jsonschema

    schema = json.loads(
        resources.files("client.check").joinpath("meltano.schema.json").read_bytes()
    )
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def schema_version() -> str:
    """The Meltano version the vendored schema came from."""
    return resources.files("client.check").joinpath("meltano.schema.version").read_text().strip()


def _as_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def _line(doc: Located, path: list[Any]) -> int:
    """The line of the deepest located mapping or key along a schema error's path."""
    line = doc.line
    node: Any = doc
    for step in path:
        if isinstance(node, Located):
            line = node.line_of(step)
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
            if isinstance(node, Located):
                line = node.line
        else:
            break
    return line


def _error_line(doc: Located, error: Any) -> int:
    """The line of the key a schema error is about: for a key the schema does not allow,
    that key's own line rather than its mapping's."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        if extra:
            path.append(extra[0])
    return _line(doc, path)


_JSON_TYPES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def _kind(value: Any) -> str:
    """What a value is, never what it holds."""
    return _JSON_TYPES.get(type(value), "a value")


def _expected(schema: Any) -> str:
    kinds = schema if isinstance(schema, list) else [schema]
    return " or ".join(str(k) for k in kinds)


def _value_free(error: Any) -> str:
    """What the schema refuses, in words that never quote the project's value: a literal
    under `config:` or `env:` may be a secret, and the finding goes to logs, the editor and
    a pull request's comment. Keys and the schema's own words are not values."""
    kind = error.validator
    if kind in ("required", "additionalProperties", "unevaluatedProperties", "dependentRequired"):
        return str(error.message)  # names of keys, from the file or the schema
    if kind == "type":
        wanted = _expected(error.validator_value)
        return f"it is {_kind(error.instance)}, where the schema wants {wanted}"
    if kind == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value[:10])
        return f"it is not one of {allowed}"
    if kind == "const":
        return f"it is not {error.validator_value!r}"
    if kind == "pattern":
        return f"it does not match the pattern {error.validator_value!r}"
    if kind in ("anyOf", "oneOf"):
        return f"{_kind(error.instance)} that matches none of the forms the schema allows here"
    return f"{_kind(error.instance)} that fails the schema's '{kind}' rule"


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "the top level"
    message = _value_free(error)
    if len(message) > 200:
        message = message[:200] + "..."
    return f"Meltano's schema refuses {where}: {message}"


@cache
def _plugin_keys() -> frozenset[str]:
    """Every key the schema allows on a plugin of some type."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                found.update(node["properties"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(_validator().schema["$defs"]["plugins"])
    return frozenset(found)


def _a_key_of_another_plugin_type(error: Any) -> bool:
    """An unknown-key error on a plugin whose keys are all valid on some plugin type:
    Meltano's schema leaves out keys Meltano itself writes (`meltano add --from-ref` puts
    `capabilities:` under a utility) and loads, so it is a warning, never a refused run. A
    key no plugin type knows (a misspelling) stays an error."""
    path = list(error.absolute_path)
    if error.validator not in ("additionalProperties", "unevaluatedProperties"):
        return False
    if len(path) != 3 or path[0] != "plugins" or not isinstance(error.instance, dict):
        return False
    return all(isinstance(k, str) and k in _plugin_keys() for k in error.instance)


OWN_SECTION = "meltano_forge"
"""meltano-forge's own settings in `meltano.yml` (README, Configuration): Meltano loads a
project that has them, and they are checked where they are read (`client.settings`)."""


def check_schema(project: Project) -> None:
    """Validate each loaded file against Meltano's schema; findings are errors."""
    validator = _validator()
    for path, doc in project.documents.items():
        data = _as_json(doc)
        if path == MELTANO_YML and isinstance(data, dict):
            data.pop(OWN_SECTION, None)
        errors = sorted(
            validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]
        )
        for error in errors[:MAX_PER_FILE]:
            if _a_key_of_another_plugin_type(error):
                project.findings.append(
                    Finding(
                        "schema",
                        Severity.WARNING,
                        path,
                        _error_line(doc, error),
                        _describe(error) + " (the schema allows it for other plugin types, "
                        "and Meltano loads it: it writes such keys itself from a plugin's "
                        "definition, e.g. a utility's capabilities)",
                        "Leave it, or remove the key if the plugin does not use it",
                    )
                )
                continue
            project.findings.append(
                Finding(
                    "schema",
                    Severity.ERROR,
                    path,
                    _error_line(doc, error),
                    _describe(error),
                    "Fix the key or value as Meltano's reference for meltano.yml describes it",
                )
            )
