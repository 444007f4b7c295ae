"""Service settings: the client's settings model plus the projects file and storage."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from client.plugin_cache import DEFAULT_MAX_BYTES
from client.policy import DEFAULT_PROTECTED
from client.settings import Settings, SettingsError
from providers.config import ForgeConfig
from providers.errors import InvalidRequest
from providers.redaction import protect_logs
from providers.registry import locate
from providers.safety import Limits


class Role(enum.IntEnum):
    """What a token may do; each role includes the ones below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3


def _secret_from_file(data: Any, field: str) -> Any:
    """`{field}_file: PATH` (Docker and Kubernetes secrets) or `{field}_env: NAME`."""
    if isinstance(data, dict) and not data.get(field) and data.get(f"{field}_env"):
        name = data[f"{field}_env"]
        if name not in os.environ:
            msg = f"{field}_env names {name}, which is not set"
            raise ValueError(msg)
        data = {k: v for k, v in data.items() if k != f"{field}_env"}
        return {**data, field: os.environ[name]}
    if isinstance(data, dict) and not data.get(field) and data.get(f"{field}_file"):
        path = Path(data[f"{field}_file"])
        try:
            return {**data, field: path.read_text().strip()}
        except OSError as exc:
            msg = f"{field}_file cannot be read ({path}): {exc.strerror}"
            raise ValueError(msg) from None
    return data


class DeployTarget(BaseModel):
    """Where to send a redeploy when a matching push arrives (admin-configured only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    branch: str = Field(description="Branch glob, e.g. 'main' or 'release-*'")
    paths: tuple[str, ...] = Field(default=(), description="Path globs; empty means any change")
    url: str
    secret: SecretStr | None = None
    secret_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return _secret_from_file(data, "secret")


PROJECT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PROJECT_NAME_RULE = (
    "a project name is 1 to 64 letters, digits, '_', '.' or '-', and starts with a letter or "
    "a digit"
)
"""The rule behind `PROJECT_NAME`, in words, for every error that refuses a name."""


class SecureCookies(enum.StrEnum):
    """When session cookies carry `Secure`: `auto` follows the request's scheme (right when
    uvicorn trusts the TLS proxy's headers), `always` forces it behind any TLS proxy."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


class ProjectConfig(BaseModel):
    """One Meltano project the service fronts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=PROJECT_NAME, description=PROJECT_NAME_RULE)
    repo: str
    provider: str | None = None
    api_url: str | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    protected_branches: tuple[str, ...] = DEFAULT_PROTECTED
    working_branch: str = "development"
    project_path: str = Field(default="", description="Monorepos: the folder holding meltano.yml")
    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = None
    gitlab_signing_token: SecretStr | None = None
    deploy_targets: tuple[DeployTarget, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return _secret_from_file(_secret_from_file(data, "token"), "webhook_secret")

    def forge_config(self, limits: Limits | None = None) -> ForgeConfig:
        """The adapter configuration for this project's repository."""
        try:
            location = locate(self.repo, self.provider, self.api_url)
        except InvalidRequest as exc:
            msg = f"project {self.name}: {exc}"
            raise SettingsError(msg) from None
        return ForgeConfig(location, token=self.token, archive_limits=limits or Limits())


class ApiToken(BaseModel):
    """A bearer token for the HTTP API, scoped to projects and a role."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    token: SecretStr | None = None
    token_file: Path | None = None
    projects: tuple[str, ...] = ("*",)
    role: Role = Role.READ

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        data = _secret_from_file(data, "token")
        if isinstance(data, dict) and isinstance(data.get("role"), str):
            data = {**data, "role": Role[data["role"].upper()]}
        return data


class ProjectsFile(BaseModel):
    """The YAML file named by MELTANO_FORGE_PROJECTS_FILE."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    projects: tuple[ProjectConfig, ...] = ()
    tokens: tuple[ApiToken, ...] = ()

    def project(self, name: str) -> ProjectConfig | None:
        """A project by name."""
        return next((p for p in self.projects if p.name == name), None)

    def secret_values(self) -> list[str]:
        """Every secret the file holds (forge tokens, API tokens, webhook and deploy
        secrets), for the one redaction point: a forge that echoes one in an error body
        shows `***` wherever the words go."""
        found: list[SecretStr | None] = [t.token for t in self.tokens]
        for project in self.projects:
            found += [project.token, project.webhook_secret, project.gitlab_signing_token]
            found += [t.secret for t in project.deploy_targets]
        return [s.get_secret_value() for s in found if s is not None]


class ServiceSettings(Settings):
    """Everything `meltano-forge serve` reads from the environment."""

    projects_file: Path | None = Field(
        None,
        description="the projects, their forge tokens, webhook secrets, deploy targets "
        "and API tokens (YAML, `examples/projects.yml`)",
    )
    database_url: str = Field(
        "sqlite:///./meltano-forge.db",
        description="`postgresql+psycopg://…` for several replicas",
    )
    cache_dir: Path = Field(Path(".meltano-forge-cache"), description="archives cached by SHA")
    data_dir: Path = Field(
        Path(".meltano-forge-data"),
        description="projects set up in the browser, their forge tokens (mode 0600), the "
        "setup token",
    )
    local_repos_dir: Path | None = Field(
        None,
        description="the only folder under which the setup screen registers or creates local "
        "repositories (default: `repos` in the data folder); no path outside it is looked at",
    )
    secure_cookies: SecureCookies = Field(
        SecureCookies.AUTO,
        description="`auto` (from the request's scheme), `always` behind a TLS proxy whose "
        "forwarded headers uvicorn does not trust, or `never`",
    )
    session_hours: float = Field(8.0, description="how long a browser stays signed in")
    cache_max_bytes: int = Field(2 * 1024**3, description="the archive cache's size on disk")
    webhook_max_bytes: int = Field(
        1024 * 1024, description="largest webhook body, counted as it streams"
    )
    form_max_bytes: int = Field(
        8 * 1024 * 1024,
        description="largest form body, urlencoded or multipart, signed in or not",
    )
    body_max_bytes: int = Field(
        256 * 1024 * 1024,
        description="largest API request body (a commit's JSON, base64 included), held and "
        "counted before it is parsed",
    )
    service_plugin_cache: Path | None = Field(
        None,
        description="a folder where the service keeps plugin environments for its runners "
        "(per project; unset: the service holds none and runners install)",
    )
    service_plugin_cache_max_bytes: int = Field(
        DEFAULT_MAX_BYTES,
        description="each project's share of the service's plugin cache, past which its least "
        "recently used entries go",
        gt=0,
    )
    service_plugin_env_max_bytes: int = Field(
        1024**3,
        description="largest plugin environment a runner may upload, counted as it streams",
        gt=0,
    )
    service_plugin_lease_seconds: float = Field(
        60.0,
        description="how long a runner's claim to install an entry lasts unless renewed (a "
        "killed runner's ends then)",
        gt=0,
    )
    outbox_interval: float = Field(1.0, description="seconds between redeploy delivery passes")
    outbox_max_attempts: int = Field(8, description="attempts before a delivery is dead")
    outbox_base_delay: float = Field(2.0, description="first retry delay, doubled each time")
    outbox_lease_seconds: float = Field(
        60.0, description="how long a replica holds a delivery it is sending"
    )
    public_url: str | None = Field(
        None,
        description="the service's address as people reach it (`https://forge.example.com`), "
        "for the link from a commit status or a PR/MR comment to the check's findings page",
        pattern=r"^https?://[^\s]+$",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The service reads no workspace's `meltano.yml`: arguments and environment only."""
        return (init_settings, env_settings, file_secret_settings)

    @property
    def local_repos_root(self) -> Path:
        """Where local repositories set up in the browser live (resolved: symlinks followed)."""
        return (self.local_repos_dir or self.data_dir / "repos").resolve()

    @property
    def projects_files(self) -> tuple[Path, ...]:
        """The files `load_projects` reads, so a change to any of them can be noticed."""
        configured = (self.projects_file,) if self.projects_file is not None else ()
        return (*configured, self.managed_projects_file)

    @property
    def managed_projects_file(self) -> Path:
        """Where the setup screen keeps the projects it registers."""
        return self.data_dir / "projects.yml"

    def load_projects(self) -> ProjectsFile:
        """The projects file and the projects set up in the browser, validated; errors name
        the variable to fix. A name in both is the projects file's."""
        configured = _read_projects(self.projects_file, "MELTANO_FORGE_PROJECTS_FILE")
        managed = _read_projects(
            self.managed_projects_file if self.managed_projects_file.exists() else None,
            f"the setup screen's {self.managed_projects_file}",
        )
        names = {p.name for p in configured.projects}
        token_names = {t.name for t in configured.tokens}
        loaded = ProjectsFile(
            projects=(*configured.projects, *(p for p in managed.projects if p.name not in names)),
            tokens=(*configured.tokens, *(t for t in managed.tokens if t.name not in token_names)),
        )
        protect_logs(*loaded.secret_values())
        return loaded


def _read_projects(path: Path | None, what: str) -> ProjectsFile:
    if path is None:
        return ProjectsFile()
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return ProjectsFile.model_validate(data)
    except OSError as exc:
        msg = f"{what} cannot be read ({path}): {exc.strerror}"
        raise SettingsError(msg) from None
    except (yaml.YAMLError, ValidationError) as exc:
        msg = f"{what} ({path}) is invalid: {_first_line(exc)}"
        raise SettingsError(msg) from None


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return str(exc).splitlines()[0]


if __name__ == "__main__":
    from client.settings import settings_table

    print(settings_table(ServiceSettings, own_only=True))
