"""A Meltano project's files and plugins, read the way Meltano reads them: `meltano.yml`,
the files its `include_paths` name, and the lock files under `plugins/` that give a hub
plugin its `pip_url` when `meltano.yml` does not."""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.bounded_yaml import YamlRefused, load

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plugin:
    """One plugin and what installs it."""

    kind: str
    """`extractors`, `loaders`, `utilities`, ..."""
    name: str
    pip_url: str
    python: str | None = None
    """The plugin's own `python:` (an interpreter to build its environment with), if any."""
    dir_name: str = ""
    """Where Meltano puts its environment (`plugin_dir_name`): its own name, or the plugin
    it inherits from when it installs the same thing; empty means its name."""

    @property
    def venv_name(self) -> str:
        """The folder under `<sys dir>/<type>/` that holds this plugin's environment."""
        return self.dir_name or self.name


def read_project_yaml(root: Path, rel: str) -> dict[str, Any]:
    """A project YAML file as a mapping, bounded (`client.bounded_yaml`): `{}` when it is
    missing, not a mapping, or refused, with one warning saying why, so that a broken or
    hostile file never stops a run (Meltano itself then says what it makes of it)."""
    try:
        data = load((root / rel).read_bytes(), rel)
    except OSError:
        return {}
    except YamlRefused as exc:
        _warn_once(
            f"meltano-forge: warning: {exc}. Until it is fixed, meltano-forge finds no "
            "plugins, include files or project_readonly in it"
        )
        return {}
    return data if isinstance(data, dict) else {}


@functools.cache
def _warn_once(text: str) -> None:
    """The plugin list, the install and the read-only check each read the same files."""
    log.warning("%s", text)


def project_files(root: Path) -> list[str]:
    """`meltano.yml` and the files its `include_paths` globs match (workspace paths)."""
    files = ["meltano.yml"]
    inside = root.resolve()
    patterns = read_project_yaml(root, "meltano.yml").get("include_paths")
    for pattern in patterns if isinstance(patterns, list) else []:
        if not isinstance(pattern, str):
            continue
        # Repository content: `/proc/kcore` or `../../etc/*` would have us read (and hash)
        # files far outside the project. Only what lies inside it counts. `**/**/**` means
        # `**`, but glob walks the tree once per `**`, listing each file many times over.
        matched = set(glob.glob(str(root / _one_recursion(pattern)), recursive=True))
        files += sorted(
            os.path.relpath(p, root)
            for p in matched
            if Path(p).is_file() and Path(p).resolve().is_relative_to(inside)
        )
    return list(dict.fromkeys(files))


def _one_recursion(pattern: str) -> str:
    """`pattern` with each run of `**` components made one (the same files)."""
    parts = pattern.split("/")
    kept = [p for i, p in enumerate(parts) if not (p == "**" and i and parts[i - 1] == "**")]
    return "/".join(kept)


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
        except (OSError, ValueError, RecursionError):  # a `[[[...` lock: not a lock
            continue
        if isinstance(data, dict) and data.get("pip_url"):
            locked[(str(data.get("plugin_type")), str(data.get("name")))] = str(data["pip_url"])
    items = [
        (str(kind), item)
        for rel in project_files(root)
        for kind, entries in _plugin_sections(read_project_yaml(root, rel))
        for item in entries
        if isinstance(item, dict) and item.get("name")
    ]
    urls = {(kind, str(item["name"])): item.get("pip_url") for kind, item in items}
    plugins = []
    for kind, item in items:
        name = str(item["name"])
        pip_url = item.get("pip_url") or locked.get((kind, name))
        if not pip_url:
            continue
        parent = item.get("inherit_from")
        # Meltano's `plugin_dir_name`: an inheriting plugin that installs what its parent
        # installs shares the parent's environment.
        shares = isinstance(parent, str) and pip_url == (
            urls.get((kind, parent)) or locked.get((kind, parent))
        )
        python = item.get("python")
        plugins.append(
            Plugin(
                kind,
                name,
                str(pip_url),
                python=python if isinstance(python, str) and python else None,
                dir_name=str(parent) if shares else "",
            )
        )
    return plugins


def _plugin_sections(data: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """`plugins:` as (type, entries), skipping whatever is not a list of entries."""
    by_kind = data.get("plugins")
    if not isinstance(by_kind, dict):
        return []
    return [(str(k), v) for k, v in by_kind.items() if isinstance(v, list)]


def unlocked_hub_plugins(root: Path) -> list[tuple[str, str]]:
    """Plugins whose `pip_url` only Meltano Hub knows: no `pip_url`, no lock file, no
    `namespace` (which makes a custom plugin without one uninstallable) and no
    `inherit_from`. Their environments can be reused or installed, never decided."""
    seen = {(p.kind, p.name) for p in project_plugins(root)}
    found = []
    for rel in project_files(root):
        for kind, entries in _plugin_sections(read_project_yaml(root, rel)):
            for item in entries:
                if not isinstance(item, dict) or not item.get("name"):
                    continue
                key = (kind, str(item["name"]))
                if key in seen or item.get("namespace") or item.get("inherit_from"):
                    continue
                found.append(key)
    return list(dict.fromkeys(found))
