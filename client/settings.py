"""The one settings model: `MELTANO_FORGE_*` from the environment (and `*_FILE` secrets).

Each field's description is the README's settings table (`settings_table()` renders it and
a test keeps the two equal), so a setting cannot exist without being documented.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from client import environment
from client.meltano_yml import READING, MeltanoYmlError, MeltanoYmlSource, Reading
from client.plugin_cache import DEFAULT_MAX_BYTES
from client.policy import DEFAULT_PROTECTED
from providers.config import ForgeConfig, system_author
from providers.contract import Author
from providers.errors import InvalidRequest
from providers.registry import locate
from providers.safety import Limits

ENV_PREFIX = environment.ENV_PREFIX


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

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    repo: str = Field(
        "",
        description="`https://github.com/OWNER/REPO`, `https://gitlab.com/GROUP/SUB/REPO`, "
        "`file:///path/bare.git` or a service project `https://HOST/v1/projects/NAME`",
    )
    provider: str | None = Field(
        None,
        description="`github`, `gitlab`, `local` or `service`; needed for GHE and self-managed "
        "GitLab (default: from the URL)",
    )
    api_url: str | None = Field(
        None, description="the forge's API, e.g. `https://ghe.example.com/api/v3`"
    )
    token: SecretStr | None = Field(
        None, description="forge token (service token in service mode); never logged"
    )
    token_file: Path | None = Field(
        None, description="file holding the token (Docker and Kubernetes secrets)"
    )
    branch: str | None = Field(None, description="branch to work on (default: the working branch)")
    working_branch: str = Field(
        "development", description="created from the default branch when missing"
    )
    user: str | None = Field(None, description="work on a personal branch for this user")
    personal_branch_template: str = Field(
        "{working}-{user}", description="name of personal branches"
    )
    protected_branches: str = Field(
        ",".join(DEFAULT_PROTECTED), description="comma-separated globs of read-only branches"
    )
    read_only: bool = Field(False, description="read-only whatever the branch")
    auto_commit: bool = Field(True, description="commit after commands that changed files")
    commit_on_failure: CommitOnFailure = Field(
        CommitOnFailure.RESCUE,
        description="`never`, `rescue` (push to a side branch) or `always`, when the command "
        "failed",
    )
    install: InstallPolicy = Field(
        InstallPolicy.AUTO,
        description="`auto` (install each plugin whose environment is missing or no longer "
        "matches its `pip_url`, by name), `always` (`meltano install`), `never`",
    )
    plugin_cache: Path | None = Field(
        None,
        description="a folder (often a volume many runners share) of verified plugin "
        "environments, restored instead of installed; read-only works for reading",
    )
    plugin_cache_max_bytes: int = Field(
        DEFAULT_MAX_BYTES,
        description="size of the plugin cache past which the least recently used entries go",
        gt=0,
    )
    project_dir: Path = Field(
        default_factory=Path.cwd,
        description="where the project is materialized (default: the current folder)",
    )
    project_path: str = Field(
        "", description="monorepo folder holding `meltano.yml` (default: the repository root)"
    )
    author_name: str | None = Field(
        None,
        description="commit author (default: the token's user; on a local forge "
        "`GIT_AUTHOR_NAME`, `EMAIL` or `user@host`)",
    )
    author_email: str | None = Field(None, description="commit author's e-mail")
    secret_globs: str = Field("", description="more comma-separated globs of files never to commit")
    allow_secrets: str = Field(
        "", description="comma-separated globs the secret guard lets through"
    )
    graphql_commits: bool = Field(
        True,
        description="GitHub: commit through GraphQL (one request, verified); REST when the "
        "change needs modes, symlinks or an author",
    )
    meltano_bin: str = Field("meltano", description="the `meltano` executable the runner calls")
    max_archive_bytes: int = Field(
        2 * 1024**3, description="largest snapshot to download and unpack, in bytes"
    )
    rescue_dir: Path | None = Field(
        None,
        description="where changes that cannot be pushed are saved as bundles (default: "
        "`.meltano-forge/rescue` in the project folder)",
    )
    git_metadata: bool = Field(
        False,
        description="also keep a shallow `.git` in the workspace, for people who have git",
    )
    workspace_id: str | None = Field(
        None, description="service mode: the name this workspace reports (default: host-folder)"
    )
    trusted_hosts: str = Field(
        "",
        description="comma-separated `host[:port]` a project's `meltano.yml` may name as its "
        "forge besides github.com and gitlab.com (environment only)",
    )
    _meltano_yml: Reading = PrivateAttr(default_factory=lambda: Reading({}))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the workspace's `meltano.yml`."""
        given: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
        environment = {**env_settings(), **given}
        folder = Path(environment.get("project_dir") or Path.cwd())
        try:
            from_yml = MeltanoYmlSource(settings_cls, folder, environment, os.environ)
        except MeltanoYmlError as exc:
            raise SettingsError(str(exc)) from None
        return (init_settings, env_settings, from_yml, file_secret_settings)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_the_reading(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """Keep what `meltano.yml` said beside the fields, where no source can set it."""
        reading = data.get(READING) if isinstance(data, dict) else None
        settings = handler(
            {k: v for k, v in data.items() if k != READING} if isinstance(data, dict) else data
        )
        if isinstance(reading, Reading):
            settings._meltano_yml = reading
        return settings

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
                msg = f"{ENV_PREFIX}TOKEN_FILE cannot be read ({path}): {exc.strerror}"
                raise ValueError(msg) from None
        return data

    @model_validator(mode="after")
    def _git_needs_the_whole_repository(self) -> Settings:
        if self.git_metadata and self.project_path:
            msg = (
                f"{ENV_PREFIX}GIT_METADATA needs the whole repository in the workspace; it "
                f"cannot be used with {ENV_PREFIX}PROJECT_PATH"
            )
            raise ValueError(msg)
        return self

    @property
    def git_remote(self) -> str | None:
        """The `.git` mirror's origin (no credentials in it), when it is asked for."""
        return self.forge_config().location.web_url if self.git_metadata else None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What was ignored in `meltano.yml`, and why: one line each, for the person."""
        return self._meltano_yml.warnings

    @property
    def token_variable(self) -> str | None:
        """The variable `meltano.yml`'s `token_env` names, which holds a forge credential."""
        return self._meltano_yml.token_variable

    @property
    def protected_globs(self) -> tuple[str, ...]:
        """Protected branch globs, split on commas."""
        return _split(self.protected_branches)

    @property
    def secret_glob_list(self) -> tuple[str, ...]:
        """Extra secret-file globs, split on commas."""
        return _split(self.secret_globs)

    @property
    def allowed_secret_globs(self) -> tuple[str, ...]:
        """Globs the secret guard lets through, split on commas."""
        return _split(self.allow_secrets)

    @property
    def author(self) -> Author | None:
        """The configured commit author, if any (else the forge's token owner)."""
        if self.author_name and self.author_email:
            return Author(self.author_name, self.author_email)
        return None

    @property
    def limits(self) -> Limits:
        """Caps on snapshots and change sets, the same in both directions."""
        return Limits(
            max_total_bytes=self.max_archive_bytes,
            max_file_bytes=min(self.max_archive_bytes, Limits.max_file_bytes),
        )

    def forge_config(self, environ: Mapping[str, str] | None = None) -> ForgeConfig:
        """The adapter's typed configuration; `SettingsError` when the repository is unusable."""
        try:
            location = locate(self.repo, self.provider, self.api_url)
        except InvalidRequest as exc:
            raise SettingsError(str(exc)) from None
        return ForgeConfig(
            location,
            token=self.token,
            graphql_commits=self.graphql_commits,
            archive_limits=self.limits,
            default_author=local_author(os.environ if environ is None else environ),
        )


def _split(value: str) -> tuple[str, ...]:
    return tuple(g.strip() for g in value.split(",") if g.strip())


def local_author(environ: Mapping[str, str]) -> Author | None:
    """Who commits on a local forge when no author is set (there is no token owner): git's
    own `GIT_AUTHOR_NAME`/`GIT_AUTHOR_EMAIL`, then `EMAIL`; None leaves it to `user@host`."""
    name = environ.get("GIT_AUTHOR_NAME")
    email = environ.get("GIT_AUTHOR_EMAIL") or environ.get("EMAIL")
    if not (name or email):
        return None
    fallback = system_author()
    return Author(
        name or (email.partition("@")[0] if email else fallback.name), email or fallback.email
    )


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment plus CLI overrides; errors become one line."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """The first validation error as one line that names the variable to fix."""
    first = exc.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if not first["loc"]:  # a model-level check; its message names the variable itself
        return message
    name = ENV_PREFIX + "_".join(str(p) for p in first["loc"]).upper()
    return f"{name}: {message}"


def settings_table(model: type[BaseSettings] = Settings, *, own_only: bool = False) -> str:
    """The README's Markdown table of every setting, its variable, default and meaning
    (`own_only`: only those a subclass adds, e.g. the service's)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        if own_only and name in Settings.model_fields:
            continue
        if info.default_factory is not None or info.default in (None, ""):
            default = "—"
        elif isinstance(info.default, enum.Enum):
            default = f"`{info.default.value}`"
        elif isinstance(info.default, bool):
            default = f"`{str(info.default).lower()}`"
        else:
            default = f"`{info.default}`"
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {default} | {info.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
