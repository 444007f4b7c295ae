"""The one settings model: `MELTANO_FORGE_*` from the environment (and `*_FILE` secrets)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from providers.config import ForgeConfig
from providers.errors import InvalidRequest
from providers.registry import locate
from providers.tarball import ArchiveLimits


class CommitOnFailure(enum.StrEnum):
    """What to do with changes when the command failed."""

    NEVER = "never"
    RESCUE = "rescue"
    ALWAYS = "always"


class InstallPolicy(enum.StrEnum):
    """When the runner runs `meltano install`."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


class SettingsError(Exception):
    """A missing or invalid setting: one line naming the variable that fixes it."""


class Settings(BaseSettings):
    """Client (and service) settings; see the README's table."""

    model_config = SettingsConfigDict(env_prefix="MELTANO_FORGE_", extra="ignore", frozen=True)

    repo: str = ""
    provider: str | None = None
    api_url: str | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    branch: str | None = None
    working_branch: str = "development"
    user: str | None = None
    personal_branch_template: str = "{working}-{user}"
    protected_branches: str = "main,master"
    read_only: bool = False
    auto_commit: bool = True
    project_dir: Path = Field(default_factory=Path.cwd)
    project_path: str = ""
    author_name: str | None = None
    author_email: str | None = None
    commit_on_failure: CommitOnFailure = CommitOnFailure.RESCUE
    install: InstallPolicy = InstallPolicy.AUTO
    secret_globs: str = ""
    allow_secrets: str = ""
    graphql_commits: bool = False
    meltano_bin: str = "meltano"
    max_archive_bytes: int = 2 * 1024**3
    workspace_id: str | None = None

    @field_validator("project_path")
    @classmethod
    def _strip_path(cls, value: str) -> str:
        return value.strip("/")

    @model_validator(mode="before")
    @classmethod
    def _token_from_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("token") and data.get("token_file"):
            path = Path(data["token_file"])
            try:
                data = {**data, "token": path.read_text().strip()}
            except OSError as exc:
                msg = f"MELTANO_FORGE_TOKEN_FILE cannot be read ({path}): {exc.strerror}"
                raise ValueError(msg) from None
        return data

    @property
    def protected_globs(self) -> tuple[str, ...]:
        """Protected branch globs, split on commas."""
        return tuple(g.strip() for g in self.protected_branches.split(",") if g.strip())

    def forge_config(self) -> ForgeConfig:
        """The adapter's typed configuration; `SettingsError` when the repository is unusable."""
        try:
            location = locate(self.repo, self.provider, self.api_url)
        except InvalidRequest as exc:
            raise SettingsError(str(exc)) from None
        limits = ArchiveLimits(
            max_total_bytes=self.max_archive_bytes,
            max_file_bytes=min(self.max_archive_bytes, 512 * 1024**2),
        )
        return ForgeConfig(
            location, token=self.token, graphql_commits=self.graphql_commits, archive_limits=limits
        )


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment plus CLI overrides; errors become one line."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "_".join(str(p) for p in first["loc"]).upper() or "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        msg = f"MELTANO_FORGE_{name}: {message}"
        raise SettingsError(msg) from None
