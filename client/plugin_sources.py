"""Plugins installed from git without git: each `git+` requirement of a `pip_url` is
fetched as a source archive over HTTP, never cloned.

A plugin hosted on the configured forge (GitHub, GHE, GitLab, self-managed) comes through
that forge's API archive endpoint with the project's token, so private plugin repositories
work; public github.com and gitlab.com plugins come from their archive URLs. The archive is
checked and unpacked like any snapshot, into `.meltano-forge/plugin-sources/`, and pip or
uv is handed `name @ file:///that/folder`, which both install without git. meltano.yml is
never touched: `pip_rewrite.py`, run inside Meltano's own interpreter, swaps the
requirements only at the moment Meltano calls its installer (see that module for why).
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import tomllib
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from client.manifest import STATE_DIR
from client.plugins import Plugin
from client.staging import stage
from providers.config import ForgeConfig, ProviderKind
from providers.contract import FileMode, Snapshot
from providers.errors import InvalidRequest, ProviderError, Unavailable
from providers.registry import locate, open_forge
from providers.safety import Limits
from providers.tarball import ChunkReader, open_tarball

SOURCES_DIR = "plugin-sources"
PUBLIC = {"github.com": "github", "www.github.com": "github", "gitlab.com": "gitlab"}


class PluginSourceError(InvalidRequest):
    """A plugin's git requirement that cannot be fetched without git."""


@dataclass(frozen=True)
class GitRequirement:
    """One `git+` token of a plugin's `pip_url`."""

    plugin: str
    """The plugin that asks for it (for messages)."""
    token: str
    """The token exactly as Meltano hands it to the installer."""
    scheme: str
    host: str
    path: str
    """`owner/repo` or `group/sub/repo`, without `.git`."""
    ref: str
    """Tag, branch or commit; `HEAD` when the URL names none."""
    subdirectory: str
    name: str | None
    """The distribution name, when the token gives it (`name @ ...` or `#egg=`)."""


def git_requirements(plugins: list[Plugin], environ: Mapping[str, str]) -> list[GitRequirement]:
    """Every `git+` token of every plugin's `pip_url` (environment variables expanded, as
    Meltano expands them), parsed; forms that need git are refused.

    `environ` is the command's environment (`runner.child_environment`), never ours: a
    `pip_url` comes from the repository, and `git+https://github.com/x/y@${MELTANO_FORGE_TOKEN}`
    must not put the forge token into a URL or a message."""
    found = []
    for plugin in plugins:
        for token in shlex.split(expand(plugin.pip_url, environ)):
            requirement = parse(plugin.name, token)
            if requirement is not None and requirement not in found:
                found.append(requirement)
    return found


_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def expand(text: str, environ: Mapping[str, str]) -> str:
    """`$VAR` and `${VAR}` replaced from `environ`; unknown ones stay as written (as
    `os.path.expandvars` leaves them), but from the given mapping, not `os.environ`."""

    def value(found: re.Match[str]) -> str:
        name = found["braced"] or found["plain"]
        return environ.get(name, found[0])

    return _VARIABLE.sub(value, text)


_NAMED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*@\s*(?P<url>git\+.*)$")


def requirement_url(token: str) -> str:
    """The URL of a requirement token (`name @ URL`, `name@git+URL` or `URL`)."""
    named = _NAMED.match(token)
    if named:
        return named["url"]
    return token.partition("@")[2].strip() if " @ " in token else token


def parse(plugin: str, token: str) -> GitRequirement | None:
    """A `git+` token as a `GitRequirement`; None for other requirements."""
    named = _NAMED.match(token)
    name, url = (named["name"], named["url"]) if named else (None, token)
    if not url.startswith("git+"):
        return None
    try:
        parsed = urllib.parse.urlsplit(url[len("git+") :])
        hostname = parsed.hostname
    except ValueError:  # `git+https://[host`: pip cannot read it either
        msg = f"The plugin '{plugin}' installs from a git URL that is not a URL"
        raise PluginSourceError(msg, "Fix the URL in its pip_url") from None
    if parsed.scheme not in ("https", "http") or not hostname:
        msg = (
            f"The plugin '{plugin}' installs from {url.split('#')[0]}, which needs git "
            f"({parsed.scheme or 'an scp-style'} URL)"
        )
        raise PluginSourceError(
            msg,
            "Use a git+https:// URL on the configured forge, github.com or gitlab.com, or "
            "publish the plugin to a package index",
        )
    path, _, ref = parsed.path.strip("/").partition("@")
    fragment = dict(urllib.parse.parse_qsl(parsed.fragment))
    return GitRequirement(
        plugin,
        token,
        parsed.scheme,
        parsed.netloc.rpartition("@")[2].lower(),
        path.removesuffix(".git"),
        ref or "HEAD",
        fragment.get("subdirectory", "").strip("/"),
        name or fragment.get("egg"),
    )


@dataclass
class PluginFetcher:
    """Fetches plugin sources for one workspace."""

    root: Path
    config: ForgeConfig | None
    """The configured forge (None when there is none, e.g. the local default)."""
    limits: Limits
    timeout: float = 60.0
    resolved: dict[str, str] = field(default_factory=dict)
    """Token → the commit SHA its archive was (`plugin_git_refs` records it per plugin)."""
    _shas: dict[Path, str] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """Where unpacked plugin sources live (inside `.meltano-forge/`, never committed)."""
        return self.root / STATE_DIR / SOURCES_DIR

    def rewrites(self, requirements: list[GitRequirement]) -> dict[str, str]:
        """Token → `name @ file:///source` for each requirement, fetching each once."""
        shutil.rmtree(self.folder, ignore_errors=True)
        out = {}
        for requirement in requirements:
            source = self.fetch(requirement)
            if requirement.subdirectory:
                source = source / requirement.subdirectory
                if not source.is_dir():
                    msg = (
                        f"The plugin '{requirement.plugin}' names the subdirectory "
                        f"'{requirement.subdirectory}', which {requirement.path}@"
                        f"{requirement.ref} does not have"
                    )
                    raise PluginSourceError(msg, "Check the pip_url's #subdirectory=")
            name = requirement.name or distribution_name(source) or requirement.path.split("/")[-1]
            out[requirement.token] = f"{name} @ {source.resolve().as_uri()}"
        return out

    def fetch(self, requirement: GitRequirement) -> Path:
        """Download and unpack one requirement's archive; its folder."""
        target = self.folder / requirement.host / requirement.path / requirement.ref
        if not os.path.normpath(target).startswith(f"{os.path.normpath(self.folder)}{os.sep}"):
            msg = (
                f"The plugin '{requirement.plugin}' names {requirement.path}@{requirement.ref}, "
                "which would be unpacked outside the plugin sources folder"
            )
            raise PluginSourceError(msg, "Use a plain OWNER/REPO path and a tag or commit")
        if target.is_dir():
            if target in self._shas:
                self.resolved[requirement.token] = self._shas[target]
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        import httpx  # only projects with git+ plugins need it: a runner starts faster

        try:
            with self._snapshot(requirement) as snapshot:
                staged = stage(
                    target.parent,
                    snapshot.sha,
                    snapshot.entries,
                    prefix="",
                    limits=self.limits,
                    wanted=lambda rel, sha, mode: True,
                )
                if snapshot.sha:
                    self.resolved[requirement.token] = self._shas[target] = snapshot.sha
        except (ProviderError, httpx.HTTPError) as exc:
            msg = (
                f"The plugin '{requirement.plugin}' could not be fetched from "
                f"{requirement.host}/{requirement.path}@{requirement.ref}: {exc}"
            )
            raise Unavailable(
                msg,
                "Check the pip_url's repository and ref, and that the token may read it",
            ) from exc
        for rel, target_text in staged.links.items():
            link = staged.folder / rel
            link.unlink()
            os.symlink(target_text, link)
        for rel, staged_file in staged.files.items():
            if staged_file.mode is FileMode.EXECUTABLE:
                (staged.folder / rel).chmod(0o755)
        staged.folder.rename(target)
        return target

    @contextmanager
    def _snapshot(self, requirement: GitRequirement) -> Iterator[Snapshot]:
        location = self._on_forge(requirement)
        if location is not None:
            forge = open_forge(location)
            try:
                with forge.archive(requirement.ref) as snapshot:
                    yield snapshot
            finally:
                forge.close()
            return
        kind = PUBLIC.get(requirement.host)
        if kind is None:
            msg = (
                f"The plugin '{requirement.plugin}' installs from {requirement.host}, which is "
                "neither the configured forge, github.com nor gitlab.com"
            )
            raise PluginSourceError(
                msg, "Publish it to a package index, or host it on the configured forge"
            )
        import httpx

        with (
            httpx.Client(timeout=self.timeout, follow_redirects=True) as client,
            client.stream("GET", _archive_url(kind, requirement)) as response,
        ):
            if response.status_code >= 400:
                msg = f"{requirement.host} answered {response.status_code}"
                raise Unavailable(msg)
            with open_tarball(ChunkReader(response.iter_raw(1 << 16)), limits=self.limits) as (
                sha,
                entries,
            ):
                yield Snapshot(sha, entries)

    def _on_forge(self, requirement: GitRequirement) -> ForgeConfig | None:
        return on_forge(self.config, self.limits, requirement)


def on_forge(
    config: ForgeConfig | None, limits: Limits, requirement: GitRequirement
) -> ForgeConfig | None:
    """The configured forge's settings for the plugin's repository, if it lives there
    (the same host as the project's forge, GitHub or GitLab)."""
    if config is None or config.location.kind not in (ProviderKind.GITHUB, ProviderKind.GITLAB):
        return None
    forge_host = urllib.parse.urlsplit(config.location.web_url).netloc.lower()
    if requirement.host != forge_host:
        return None
    url = f"{requirement.scheme}://{requirement.host}/{requirement.path}"
    location = locate(url, config.location.kind.value, config.location.api_url)
    return ForgeConfig(
        location,
        token=config.token,
        retry=config.retry,
        archive_limits=limits,
        user_agent=config.user_agent,
    )


def _archive_url(kind: str, requirement: GitRequirement) -> str:
    ref = urllib.parse.quote(requirement.ref, safe="")
    if kind == "github":
        return f"https://codeload.github.com/{requirement.path}/tar.gz/{ref}"
    name = requirement.path.rsplit("/", 1)[-1]
    return f"https://gitlab.com/{requirement.path}/-/archive/{ref}/{name}-{ref}.tar.gz"


def distribution_name(source: Path) -> str | None:
    """The package's name from pyproject.toml, setup.cfg or setup.py, if it says."""
    try:
        project = tomllib.loads((source / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        project = {}
    name = project.get("project", {}).get("name") or project.get("tool", {}).get("poetry", {}).get(
        "name"
    )
    if name:
        return str(name)
    config = configparser.ConfigParser()
    try:
        config.read(source / "setup.cfg")
        if config.has_option("metadata", "name"):
            return config.get("metadata", "name")
    except configparser.Error:
        pass
    try:
        found = re.search(
            r"""name\s*=\s*["']([A-Za-z0-9._-]+)["']""", (source / "setup.py").read_text()
        )
    except OSError:
        return None
    return found[1] if found else None
