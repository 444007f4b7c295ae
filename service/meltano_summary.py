"""Parse a project's `meltano.yml` and its include files at a commit, for dashboards.

The files are repository content (SPEC §8): they load through `client.bounded_yaml`, so an
alias bomb or a `[[[...` file is a 422 naming the file and line, never hundreds of
megabytes or a 500, and a value of the wrong shape is skipped rather than trusted."""

from __future__ import annotations

import fnmatch
from typing import Any

from client.bounded_yaml import Budget, YamlRefused, load
from providers.contract import Forge
from providers.errors import UnsafeInput


def _load(data: bytes, path: str, budget: Budget) -> dict[str, Any]:
    try:
        loaded = load(data, path, budget=budget)
    except YamlRefused as exc:
        where = f"{path} line {exc.line}" if exc.line is not None else path
        how = exc.instruction[:1].lower() + exc.instruction[1:]
        msg = f"{where} cannot be read: {exc.reason}; {how}"
        raise UnsafeInput(msg, "Fix the file on that branch") from None
    return loaded if isinstance(loaded, dict) else {}


def _mappings(value: Any) -> list[dict[str, Any]]:
    """The mappings of a list (`plugins.extractors`, `schedules`, ...), nothing else."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _picked(item: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: item[k] for k in keys if item.get(k) is not None}


def summarize(forge: Forge, sha: str, project_path: str = "") -> dict[str, Any]:
    """Plugins (by type), schedules, jobs and environments across meltano.yml and includes."""
    prefix = project_path.strip("/") + "/" if project_path.strip("/") else ""
    budget = Budget()  # the answer holds them all: bounded together, not only one by one
    root = _load(forge.read_file(sha, f"{prefix}meltano.yml"), "meltano.yml", budget)
    files = ["meltano.yml"]
    documents = [root]
    patterns = [str(p) for p in root.get("include_paths") or [] if isinstance(p, str)]
    if patterns:
        tree = [e.path[len(prefix) :] for e in forge.list_tree(sha) if e.path.startswith(prefix)]
        for path in sorted(
            p for p in tree if any(fnmatch.fnmatch(p, pattern.lstrip("./")) for pattern in patterns)
        ):
            files.append(path)
            documents.append(_load(forge.read_file(sha, prefix + path), path, budget))
    plugins: dict[str, list[dict[str, Any]]] = {}
    schedules: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    environments: list[str] = []
    for doc in documents:
        by_kind = doc.get("plugins")
        for kind, items in (by_kind if isinstance(by_kind, dict) else {}).items():
            for item in _mappings(items):
                plugins.setdefault(str(kind), []).append(
                    _picked(item, ("name", "variant", "namespace", "inherit_from"))
                )
        schedules += [
            _picked(s, ("name", "interval", "job", "extractor", "loader"))
            for s in _mappings(doc.get("schedules"))
        ]
        jobs += [
            {"name": j.get("name"), "tasks": j.get("tasks")} for j in _mappings(doc.get("jobs"))
        ]
        environments += [e["name"] for e in _mappings(doc.get("environments")) if e.get("name")]
    return {
        "sha": sha,
        "files": files,
        "default_environment": root.get("default_environment"),
        "plugins": plugins,
        "schedules": schedules,
        "jobs": jobs,
        "environments": environments,
    }
