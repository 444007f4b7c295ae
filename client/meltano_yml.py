"""A settings source: the `meltano_forge:` key of the workspace's `meltano.yml`.

The seed: "URL and creds are in env vars or meltano.yml". Non-secret settings may live
there (Meltano keeps an unknown top-level key as it is); environment variables win. A token
may only be named, never written: `token_env: VARIABLE` or `token_file: PATH`.

    meltano_forge:
      repo: https://github.com/acme/warehouse
      working_branch: development
      protected_branches: [main, release-*]
      token_env: GITHUB_TOKEN

`meltano.yml` is repository content, so it is untrusted (SPEC §8): anyone who can commit
to the branch controls it. It may therefore never decide where a credential goes, or which
one. Like git, which ignores `core.sshCommand` in a cloned repository, the rules are:

- The location (`repo`, `provider`, `api_url`) is one unit. When the environment names any
  part of it, every location value here is ignored. Otherwise it is honoured only when each
  host a credential would reach is github.com / gitlab.com (over https) or listed in the
  environment's `MELTANO_FORGE_TRUSTED_HOSTS`, and never for a path on this machine.
- `token_env` names only a forge-token variable (`TOKEN_VARIABLES`); `token_file` only a
  file inside the project folder, symlinks followed.
- Anything else wrong here (not YAML, an alias bomb, unknown keys, a literal token, a bad
  reference) must not stop `pull` from fetching the branch's fix: the whole section is
  ignored and a warning says so. Only a refused location with no location in the
  environment to fall back to is an error, because then nothing may be sent anywhere.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from client.bounded_yaml import YamlRefused, load
from client.policy import DEFAULT_PROTECTED
from providers.config import ProviderKind
from providers.errors import InvalidRequest
from providers.registry import credential_endpoints, is_public, locate, normal_host

KEY = "meltano_forge"
LOCATION = ("repo", "provider", "api_url")
"""Where the repository is, hence where the token goes: one unit, never split."""
PLAIN = (
    *LOCATION,
    "working_branch",
    "protected_branches",
    "auto_commit",
    "personal_branch_template",
)
"""The settings `meltano.yml` may hold (the rest are per container, or secret)."""
TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN", "GL_TOKEN", "CI_JOB_TOKEN")
"""The only variables `token_env` may name: a repository must not pick, say,
`AWS_SECRET_ACCESS_KEY` to be sent as the forge's bearer."""
READING = "__meltano_yml__"
"""The key under which the source hands its `Reading` to the settings model."""


_FALLBACK = f"meltano-forge ignores {KEY}: in meltano.yml and uses the environment's settings"


class MeltanoYmlError(Exception):
    """`meltano.yml` names a location the environment does not trust, and the environment
    names none to fall back to: nothing may be sent anywhere."""


class _Ignored(Exception):
    """The section is broken or hostile; its str is "reason. instruction"."""


@dataclass(frozen=True)
class Reading:
    """What `meltano.yml` contributes, after the trust rules."""

    values: dict[str, Any]
    """Setting values (only `PLAIN` keys, plus `token` or `token_file` from a reference)."""
    warnings: tuple[str, ...] = ()
    """One line each, for stderr: what was ignored and why."""
    token_variable: str | None = None
    """The variable `token_env` names; `run`'s child never sees it."""


class _Section(BaseModel):
    """The shape of `meltano_forge:`; a value of the wrong type falls back, never crashes."""

    model_config = ConfigDict(extra="forbid", strict=False)

    repo: str | None = None
    provider: str | None = None
    api_url: str | None = None
    working_branch: str | None = None
    protected_branches: list[str] | str | None = None
    auto_commit: bool | None = None
    personal_branch_template: str | None = None
    token_env: str | None = None
    token_file: str | None = None


def read(project_dir: Path, environment: Mapping[str, Any], environ: Mapping[str, str]) -> Reading:
    """The `meltano_forge:` mapping as setting values, after the trust rules.

    `environment` is what the environment (and the command line) already set, by field
    name; `environ` is the process environment, for `token_env`. `MeltanoYmlError` only
    when a refused location leaves no location at all."""
    try:
        section = _section(project_dir)
        token_file = _token_file(section, project_dir.resolve()) if section else None
    except _Ignored as exc:
        return Reading({}, (f"{exc}. Until it is fixed, {_FALLBACK}",))
    if section is None:
        return Reading({})
    given = section.model_dump(exclude_none=True)
    values = {k: given[k] for k in PLAIN if k in given}
    if "protected_branches" in values:
        values["protected_branches"] = _more_protected(values["protected_branches"])
    warnings = list(_location(values, environment))
    if not any(environment.get(k) for k in ("token", "token_file")):
        if section.token_env and environ.get(section.token_env):
            values["token"] = environ[section.token_env]
        elif token_file is not None:
            values["token_file"] = str(token_file)
    return Reading(values, tuple(warnings), section.token_env)


def _more_protected(globs: list[str] | str) -> str:
    """The repository's protected globs joined to the defaults: a commit to `development`
    may protect more branches, never unprotect `main` (`protected_branches: ""`). The
    environment's `MELTANO_FORGE_PROTECTED_BRANCHES`, when set, wins as a whole."""
    given = globs.split(",") if isinstance(globs, str) else globs
    return ",".join(dict.fromkeys([*DEFAULT_PROTECTED, *(g.strip() for g in given if g.strip())]))


def _section(project_dir: Path) -> _Section | None:
    """The parsed section, or None when there is none; `_Ignored` says what is wrong."""
    try:
        data = (project_dir / "meltano.yml").read_bytes()
    except OSError:
        return None
    try:
        document = load(data, "meltano.yml")
    except YamlRefused as exc:
        raise _Ignored(str(exc).rstrip(".")) from None
    raw = document.get(KEY) if isinstance(document, dict) else None
    if raw is None:
        return None
    if not isinstance(raw, dict):
        msg = f"meltano.yml: {KEY} is not a mapping. Write it as `{KEY}:` with settings below"
        raise _Ignored(msg)
    if "token" in raw:
        msg = (
            f"meltano.yml sets {KEY}.token to a value, and a token must never be committed. "
            "Use token_env: VARIABLE or token_file: PATH instead, and revoke the token "
            "that was written there"
        )
        raise _Ignored(msg)
    takes = [*PLAIN, "token_env", "token_file"]
    unknown = sorted(str(k) for k in set(raw) - set(takes))
    if unknown:
        msg = f"meltano.yml: {KEY} does not take {', '.join(unknown)}. It takes {', '.join(takes)}"
        raise _Ignored(msg)
    try:
        section = _Section.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = f"meltano.yml: {KEY}.{where} is not valid ({first['msg']}). Correct its value"
        raise _Ignored(msg) from None
    if section.token_env is not None and section.token_env not in TOKEN_VARIABLES:
        msg = (
            f"meltano.yml: {KEY}.token_env names {section.token_env}, and a repository may "
            f"only name a forge token variable. Use one of {', '.join(TOKEN_VARIABLES)}, or "
            "set MELTANO_FORGE_TOKEN in the environment"
        )
        raise _Ignored(msg)
    return section


def _token_file(section: _Section, root: Path) -> Path | None:
    """`token_file` resolved inside the project folder (symlinks followed), or `_Ignored`."""
    if not section.token_file:
        return None
    path = (root / section.token_file).resolve()
    if not path.is_relative_to(root):
        msg = (
            f"meltano.yml: {KEY}.token_file names {section.token_file}, which is outside the "
            "project folder, and a repository may only name a file inside it. Name a file "
            "in the project, or set MELTANO_FORGE_TOKEN_FILE in the environment"
        )
        raise _Ignored(msg)
    return path


def _location(values: dict[str, Any], environment: Mapping[str, Any]) -> list[str]:
    """Keep or drop the location group in `values`; the warnings. `MeltanoYmlError` when
    it is refused and the environment has no location of its own."""
    ours = {k: values.pop(k) for k in LOCATION if k in values}
    if not ours:
        return []
    if any(environment.get(k) for k in LOCATION):
        differs = [f"{KEY}.{k}" for k in LOCATION if k in ours and ours[k] != environment.get(k)]
        if not differs:
            return []
        return [
            f"meltano.yml sets {' and '.join(differs)}, and the environment's repository "
            "location wins, because a repository never chooses where the token goes. Remove "
            f"{'them' if len(differs) > 1 else 'it'} from meltano.yml, or leave "
            "MELTANO_FORGE_REPO, _PROVIDER and _API_URL unset to use the repository's"
        ]
    _check_trusted(ours, _trusted_hosts(environment.get("trusted_hosts")))
    values.update(ours)
    return []


def _trusted_hosts(value: Any) -> frozenset[str]:
    """`MELTANO_FORGE_TRUSTED_HOSTS`, normalized; it can only come from the environment."""
    entries = str(value or "").split(",")
    return frozenset(normal_host("https", e.strip()) for e in entries if e.strip())


def _check_trusted(ours: Mapping[str, Any], trusted: frozenset[str]) -> None:
    """Refuse a location from meltano.yml that the environment does not trust."""
    if not ours.get("repo"):
        return  # no repository at all: the settings say so, and nothing is sent
    try:
        location = locate(ours["repo"], ours.get("provider"), ours.get("api_url"))
    except InvalidRequest as exc:
        msg = f"meltano.yml {KEY}.repo: {exc}"
        raise MeltanoYmlError(msg) from None
    if location.kind is ProviderKind.LOCAL:
        msg = (
            f"meltano.yml {KEY}.repo names a repository on this machine's disk, and a "
            "repository may not point meltano-forge at another path. Set MELTANO_FORGE_REPO "
            "in the environment instead"
        )
        raise MeltanoYmlError(msg)
    for scheme, host in credential_endpoints(location):
        if host in trusted or (scheme == "https" and is_public(host)):
            continue
        name = "api_url" if host == _host(ours.get("api_url")) else "repo"
        msg = (
            f"meltano.yml {KEY}.{name} names host {host}, which the environment does not "
            "trust, so nothing was sent. Set MELTANO_FORGE_REPO (and MELTANO_FORGE_API_URL) "
            f"to your forge, or MELTANO_FORGE_TRUSTED_HOSTS={host} if you trust that host"
        )
        raise MeltanoYmlError(msg)


def _host(url: Any) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    parsed = urllib.parse.urlsplit(url)
    return normal_host(parsed.scheme, parsed.netloc)


class MeltanoYmlSource(PydanticBaseSettingsSource):
    """Settings from the workspace's `meltano.yml`, below the environment. Its `Reading`
    travels under `READING`, so the settings model can keep its warnings and token name."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        project_dir: Path,
        environment: Mapping[str, Any],
        environ: Mapping[str, str],
    ) -> None:
        super().__init__(settings_cls)
        self.reading = read(project_dir, environment, environ)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """One setting's value from `meltano.yml` (None when it sets none)."""
        return self.reading.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {**self.reading.values, READING: self.reading}
