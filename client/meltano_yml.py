"""A settings source: the `meltano_forge:` key of the workspace's `meltano.yml`.

The seed: "URL and creds are in env vars or meltano.yml". Non-secret settings may live
there (Meltano keeps an unknown top-level key as it is); environment variables win. A token
may only be named, never written: `token_env: VARIABLE` or `token_file: PATH`.

    meltano_forge:
      repo: https://github.com/acme/warehouse
      working_branch: development
      protected_branches: [main, release-*]
      token_env: GITHUB_TOKEN
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings, InitSettingsSource

KEY = "meltano_forge"
PLAIN = (
    "repo",
    "provider",
    "api_url",
    "working_branch",
    "protected_branches",
    "auto_commit",
    "personal_branch_template",
)
"""The settings `meltano.yml` may hold (the rest are per container, or secret)."""


class MeltanoYmlError(Exception):
    """The `meltano_forge:` key is malformed, or holds a literal token."""


def read(project_dir: Path) -> dict[str, Any]:
    """The `meltano_forge:` mapping as setting values; `MeltanoYmlError` says what is wrong."""
    try:
        document = yaml.safe_load((project_dir / "meltano.yml").read_bytes())
    except (OSError, yaml.YAMLError):
        return {}
    section = document.get(KEY) if isinstance(document, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        msg = f"meltano.yml: {KEY} must be a mapping of settings"
        raise MeltanoYmlError(msg)
    if "token" in section:
        msg = (
            f"meltano.yml sets {KEY}.token to a value, and a token must never be committed. "
            "Use token_env: VARIABLE or token_file: PATH instead, and revoke the token "
            "that was written there"
        )
        raise MeltanoYmlError(msg)
    unknown = sorted(set(section) - {*PLAIN, "token_env", "token_file"})
    if unknown:
        msg = (
            f"meltano.yml: {KEY} does not take {', '.join(unknown)}; it takes "
            f"{', '.join([*PLAIN, 'token_env', 'token_file'])}"
        )
        raise MeltanoYmlError(msg)
    values = {k: section[k] for k in PLAIN if k in section}
    if isinstance(values.get("protected_branches"), list):
        values["protected_branches"] = ",".join(str(g) for g in values["protected_branches"])
    if os.environ.get("MELTANO_FORGE_TOKEN") or os.environ.get("MELTANO_FORGE_TOKEN_FILE"):
        return values  # the environment's token wins over any reference here
    if section.get("token_env"):
        value = os.environ.get(str(section["token_env"]))
        if value:
            values["token"] = value
    if section.get("token_file"):
        values["token_file"] = str(project_dir / str(section["token_file"]))
    return values


class MeltanoYmlSource(InitSettingsSource):
    """Settings from the workspace's `meltano.yml`, below the environment."""

    def __init__(self, settings_cls: type[BaseSettings], project_dir: Path) -> None:
        super().__init__(settings_cls, read(project_dir))
