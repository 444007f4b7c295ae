"""GitHub's published REST description (tests/contracts), used two ways by the double:
to fill every response up to its schema's required fields, and to validate every request
and response it sees."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"
SPEC_PATH = CONTRACTS / "github-rest-subset.json"
GRAPHQL_PATH = CONTRACTS / "github-graphql-createCommitOnBranch.graphql"
GRAPHQL_QUERY_PATH = CONTRACTS / "github-graphql-repository.graphql"

# Operations GitHub serves that the published subset does not include; listed, not ignored.
OUTSIDE_SUBSET = {
    ("PUT", "/repos/{owner}/{repo}/contents/{path}"),  # first commit of an empty repository
    ("POST", "/graphql"),  # validated against the GraphQL schema instead
}


# Operations GitHub serves that the subset leaves out, but whose answers are schemas it
# has: validated against those (status -> schema name).
BORROWED: dict[tuple[str, str], dict[int, str]] = {
    # issues/get-comment: a comment is read back before it is edited in place
    ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}"): {
        200: "issue-comment",
        404: "basic-error",
    },
    # users/get-authenticated: whose comment the check's is (a private-user is a
    # simple-user with more fields); an installation token has no user (403)
    ("GET", "/user"): {200: "simple-user", 403: "basic-error", 404: "basic-error"},
}

# Statuses GitHub answers on an operation whose published description leaves them out
# (status -> the schema its body follows).
UNDOCUMENTED: dict[tuple[str, str], dict[int, str]] = {
    # "state is not included in the list", "No commit found for SHA: ..."
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}"): {422: "validation-error"},
    # an unknown commit
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses"): {404: "basic-error"},
    # a comment deleted since it was listed
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"): {404: "basic-error"},
}

# Statuses any endpoint may answer (bad credentials, rate limits, outages); the per-operation
# description leaves them out, but their bodies are GitHub's basic-error.
FORGE_WIDE = {401, 403, 429, 500, 502, 503}


@functools.cache
def spec() -> dict[str, Any]:
    """The OpenAPI document."""
    document: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    return document


@functools.cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    out = []
    for template in spec()["paths"]:
        regex = re.sub(
            r"\\\{(\w+)\\\}",
            lambda m: (
                f"(?P<{m.group(1)}>.+)"
                if m.group(1) in ("path", "ref", "branch")
                else f"(?P<{m.group(1)}>[^/]+)"
            ),
            re.escape(template),
        )
        out.append((re.compile(f"^{regex}$"), template))
    # Prefer the most specific (longest literal) template.
    out.sort(key=lambda item: -len(item[1].replace("{", "").replace("}", "")))
    return out


def template_for(method: str, path: str) -> str | None:
    """The spec path template a concrete API path belongs to, if the method exists there."""
    for regex, template in _templates():
        if regex.match(path) and method.lower() in spec()["paths"][template]:
            return template
    return None


def _borrowed(method: str, path: str) -> tuple[str, dict[int, str]] | None:
    for (verb, template), schemas in BORROWED.items():
        regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
        if verb == method and re.match(f"^{regex}$", path):
            return template, schemas
    return None


def _named(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problems(label: str, schema: dict[str, Any], body: bytes) -> list[str]:
    return [f"{label}: {e.message[:200]}" for e in _validator(schema).iter_errors(json.loads(body))]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _validator(schema: dict[str, Any]) -> OAS30Validator:
    return OAS30Validator({**schema, "components": spec()["components"]})


def response_schema(method: str, template: str, status: int) -> dict[str, Any] | None:
    """The JSON schema of a response, or None when the status has no JSON body."""
    responses = spec()["paths"][template][method.lower()]["responses"]
    resp = responses.get(str(status)) or responses.get("default")
    if resp is None:
        return None
    content = _resolve(resp).get("content", {})
    media = content.get("application/json") or next(iter(content.values()), None)
    return None if media is None else media.get("schema")


def conform(method: str, template: str, status: int, body: Any) -> Any:
    """`body` with every field its schema requires filled with a plausible placeholder."""
    schema = response_schema(method, template, status)
    return body if schema is None else _fill(schema, body)


def _fill(schema: dict[str, Any], value: Any) -> Any:
    schema = _resolve(schema)
    if "allOf" in schema:
        for part in schema["allOf"]:
            value = _fill(part, value)
        return value
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(s) for s in schema[key]]
            if value is not None:
                for option in options:
                    if not list(_validator(option).iter_errors(value)):
                        return value
                kind = "object" if isinstance(value, dict) else None
                chosen = next((o for o in options if o.get("type") == kind), options[0])
                return _fill(chosen, value)
            return _fill(options[0], value)
    kind = schema.get("type")
    if value is None:
        if schema.get("nullable"):
            return None
        return _placeholder(schema)
    if kind == "object" or (kind is None and isinstance(value, dict)):
        if not isinstance(value, dict):
            return value
        props = schema.get("properties", {})
        out = dict(value)
        for name in schema.get("required", []):
            if name not in out:
                out[name] = _fill(props.get(name, {}), None)
        for name, sub in props.items():
            if name in out and out[name] is not None:
                out[name] = _fill(sub, out[name])
        return out
    if kind == "array" and isinstance(value, list):
        return [_fill(schema.get("items", {}), item) for item in value]
    return value


def _placeholder(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    fmt = schema.get("format")
    if kind == "string":
        return {
            "date-time": "2024-01-01T00:00:00Z",
            "uri": "https://forge.invalid/",
            "email": "nobody@forge.invalid",
            "uri-template": "https://forge.invalid/{x}",
        }.get(fmt or "", "")
    if kind == "integer":
        return 0
    if kind == "number":
        return 0
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object" or "properties" in schema or "allOf" in schema:
        return _fill(schema, {})
    return None


def validate_request(method: str, path: str, body: bytes) -> list[str]:
    """Problems with a request against the spec (unknown operation, invalid body)."""
    template = template_for(method, path)
    if template is None:
        if _borrowed(method, path) is not None or any(
            m == method and re.match(re.sub(r"\{\w+\}", ".+", t) + "$", path)
            for m, t in OUTSIDE_SUBSET
        ):
            return []
        return [f"{method} {path} is not an operation of the published contract"]
    operation = spec()["paths"][template][method.lower()]
    request_body = operation.get("requestBody")
    if not request_body or not body:
        if request_body and _resolve(request_body).get("required"):
            return [f"{method} {template}: the request body is required"]
        return []
    schema = _resolve(request_body)["content"]["application/json"]["schema"]
    try:
        data = json.loads(body)
    except ValueError:
        return [f"{method} {template}: the request body is not JSON"]
    return [
        f"{method} {template} request: {e.message}" for e in _validator(schema).iter_errors(data)
    ]


def validate_response(method: str, path: str, status: int, body: bytes) -> list[str]:
    """Problems with a response against the spec."""
    template = template_for(method, path)
    if template is None:
        borrowed = _borrowed(method, path)
        if borrowed is None:
            return []
        name = borrowed[1].get(status) or ("basic-error" if status in FORGE_WIDE else None)
        if name is None:
            return [f"{method} {borrowed[0]}: status {status} is not documented"]
        return _problems(f"{method} {borrowed[0]} {status}", _named(name), body) if body else []
    responses = spec()["paths"][template][method.lower()]["responses"]
    if str(status) not in responses and "default" not in responses:
        undocumented = UNDOCUMENTED.get((method, template), {}).get(status)
        if undocumented is not None and body:
            return _problems(f"{method} {template} {status}", _named(undocumented), body)
        if status in FORGE_WIDE and body:
            basic = {"$ref": "#/components/schemas/basic-error"}
            return [
                f"{method} {template} {status}: {e.message[:200]}"
                for e in _validator(basic).iter_errors(json.loads(body))
            ]
        return [f"{method} {template}: status {status} is not documented"]
    schema = response_schema(method, template, status)
    if schema is None or not body:
        return []
    data = json.loads(body)
    return [
        f"{method} {template} {status}: {e.message[:200]}"
        for e in _validator(schema).iter_errors(data)
    ]
