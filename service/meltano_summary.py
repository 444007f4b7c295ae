"""Parse a project's `meltano.yml` and its include files at a commit, for dashboards."""

from __future__ import annotations

import fnmatch
from typing import Any

import yaml

from providers.contract import Forge
from providers.errors import InvalidRequest


def _load(data: bytes, path: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(data) or {}
    except yaml.YAMLError as exc:
        msg = f"{path} is not valid YAML"
        raise InvalidRequest(msg, "Fix the file on that branch") from exc
    return loaded if isinstance(loaded, dict) else {}


def summarize(forge: Forge, sha: str, project_path: str = "") -> dict[str, Any]:
    """Plugins (by type), schedules, jobs and environments across meltano.yml and includes."""
    prefix = project_path.strip("/") + "/" if project_path.strip("/") else ""
    root = _load(forge.read_file(sha, f"{prefix}meltano.yml"), "meltano.yml")
    files = ["meltano.yml"]
    documents = [root]
    patterns = root.get("include_paths") or []
    if patterns:
        tree = [e.path[len(prefix) :] for e in forge.list_tree(sha) if e.path.startswith(prefix)]
        for path in sorted(
            p for p in tree if any(fnmatch.fnmatch(p, pattern.lstrip("./")) for pattern in patterns)
        ):
            files.append(path)
            documents.append(_load(forge.read_file(sha, prefix + path), path))
    plugins: dict[str, list[dict[str, Any]]] = {}
    schedules: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    environments: list[str] = []
    for doc in documents:
        for kind, items in (doc.get("plugins") or {}).items():
            for item in items or []:
                plugins.setdefault(kind, []).append(
                    {
                        k: item.get(k)
                        for k in ("name", "variant", "namespace", "inherit_from")
                        if item.get(k) is not None
                    }
                )
        schedules += [
            {
                k: s.get(k)
                for k in ("name", "interval", "job", "extractor", "loader")
                if s.get(k) is not None
            }
            for s in doc.get("schedules") or []
        ]
        jobs += [{"name": j.get("name"), "tasks": j.get("tasks")} for j in doc.get("jobs") or []]
        environments += [e.get("name") for e in doc.get("environments") or [] if e.get("name")]
    return {
        "sha": sha,
        "files": files,
        "default_environment": root.get("default_environment"),
        "plugins": plugins,
        "schedules": schedules,
        "jobs": jobs,
        "environments": environments,
    }
