"""A Meltano project's files and plugins, read the way Meltano reads them: `meltano.yml`,
the files its `include_paths` name, and the lock files under `plugins/` that give a hub
plugin its `pip_url` when `meltano.yml` does not."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Plugin:
    """One plugin and what installs it."""

    kind: str
    """`extractors`, `loaders`, `utilities`, ..."""
    name: str
    pip_url: str


def _load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_bytes())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def project_files(root: Path) -> list[str]:
    """`meltano.yml` and the files its `include_paths` globs match (workspace paths)."""
    files = ["meltano.yml"]
    inside = root.resolve()
    for pattern in _load(root / "meltano.yml").get("include_paths") or []:
        # Repository content: `/proc/kcore` or `../../etc/*` would have us read (and hash)
        # files far outside the project. Only what lies inside it counts.
        matched = glob.glob(str(root / str(pattern)), recursive=True)
        files += sorted(
            os.path.relpath(p, root)
            for p in matched
            if Path(p).is_file() and Path(p).resolve().is_relative_to(inside)
        )
    return files


def lock_files(root: Path) -> list[str]:
    """`plugins/**/*.lock`, sorted."""
    found = glob.glob(str(root / "plugins" / "**" / "*.lock"), recursive=True)
    return sorted(os.path.relpath(p, root) for p in found)


def project_plugins(root: Path) -> list[Plugin]:
    """Every plugin with a `pip_url`, from meltano.yml and its includes, else its lock."""
    locked: dict[tuple[str, str], str] = {}
    for rel in lock_files(root):
        try:
            data = json.loads((root / rel).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("pip_url"):
            locked[(str(data.get("plugin_type")), str(data.get("name")))] = str(data["pip_url"])
    plugins = []
    for rel in project_files(root):
        for kind, items in (_load(root / rel).get("plugins") or {}).items():
            for item in items or []:
                if not isinstance(item, dict) or not item.get("name"):
                    continue
                name = str(item["name"])
                pip_url = item.get("pip_url") or locked.get((str(kind), name))
                if pip_url:
                    plugins.append(Plugin(str(kind), name, str(pip_url)))
    return plugins
