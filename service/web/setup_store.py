"""Projects set up in the browser: kept in the data folder, never in the projects file.

`projects.yml` there lists them (and the admin API token the first setup creates); each
forge token lives in its own file with mode 0600 and is referenced by path, so it is never
shown again, never logged, and never sent to a browser. The one-time setup token, printed
when the service first starts with nothing configured, lives beside them until it is used.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any

import yaml

from service.pending_setups import SetupValues
from service.settings import ServiceSettings

SETUP_TOKEN_FILE = "setup-token"  # noqa: S105 - a file name


def _private(path: Path, text: str) -> None:
    """Write a file only its owner can read (created 0600, replaced atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def setup_token(settings: ServiceSettings, *, create: bool) -> str | None:
    """The one-time setup token (made on first start when `create`), if one is pending."""
    path = settings.data_dir / SETUP_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    token = "setup-" + secrets.token_urlsafe(24)
    _private(path, token + "\n")
    return token


def setup_token_ok(settings: ServiceSettings, offered: str) -> bool:
    """Whether `offered` is the pending setup token (constant-time)."""
    pending = setup_token(settings, create=False)
    return pending is not None and hmac.compare_digest(pending.encode(), offered.strip().encode())


def consume_setup_token(settings: ServiceSettings) -> None:
    """The setup token is spent."""
    (settings.data_dir / SETUP_TOKEN_FILE).unlink(missing_ok=True)


def _managed(settings: ServiceSettings) -> dict[str, Any]:
    path = settings.managed_projects_file
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    return data if isinstance(data, dict) else {"projects": [], "tokens": []}


def project_entry(values: SetupValues, protected: list[str]) -> dict[str, Any]:
    """A checked setup as `projects.yml` lists it (the projects file's own keys)."""
    return {
        "name": values.name,
        "repo": values.repo,
        "provider": values.provider,
        "api_url": values.api_url or None,
        "working_branch": values.working_branch,
        "protected_branches": protected,
    }


def register(settings: ServiceSettings, project: dict[str, Any], forge_token: str) -> None:
    """Add a project; its forge token goes to its own 0600 file."""
    data = _managed(settings)
    token_file = settings.data_dir / "secrets" / f"{project['name']}.token"
    _private(token_file, forge_token + "\n")
    entry = {**project, "token_file": str(token_file.resolve())}
    data["projects"] = [p for p in data.get("projects", []) if p["name"] != project["name"]]
    data["projects"].append(entry)
    _private(settings.managed_projects_file, yaml.safe_dump(data, sort_keys=False))


def add_admin_token(settings: ServiceSettings, name: str) -> str:
    """A new admin API token (shown once to the person who set the service up)."""
    value = "mf-" + secrets.token_urlsafe(32)
    data = _managed(settings)
    data["tokens"] = [t for t in data.get("tokens", []) if t["name"] != name]
    data["tokens"].append({"name": name, "token": value, "role": "admin", "projects": ["*"]})
    _private(settings.managed_projects_file, yaml.safe_dump(data, sort_keys=False))
    return value
