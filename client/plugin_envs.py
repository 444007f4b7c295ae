"""Each plugin's environment, and what the runner must do about it: reuse, restore, install.

A plugin's environment is decided by what decides its virtualenv, never by the rest of
`meltano.yml`: a `config set`, a schedule, a job or an environment installs nothing. An
environment whose Meltano fingerprint matches what the plugin asks for now is reused,
wherever it came from (an earlier run, a baked image, the cache); one that does not is
restored from the plugin cache when it holds it, else installed by name.
"""

from __future__ import annotations

import enum
import functools
import json
import re
import subprocess
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from client.fingerprint import (
    SystemDir,
    UnresolvedPipUrl,
    fingerprint,
    pip_install_args,
    read_fingerprint,
)
from client.plugin_cache import EntryKey
from client.plugin_sources import PluginSourceError, parse, requirement_url
from client.plugins import Plugin, project_plugins, read_project_yaml, unlocked_hub_plugins

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class Action(enum.StrEnum):
    """What the runner did for one plugin's environment."""

    REUSED = "reused"
    RESTORED = "restored"
    INSTALLED = "installed"
    FAILED = "failed"


@dataclass
class PluginReport:
    """One plugin's line in the run's report (and `--json`)."""

    type: str
    name: str
    action: Action
    why: str
    """Why it was installed (or reused); for people."""
    seconds: float = 0.0
    cache: str = ""
    """`stored`, `not cached: <why>`, what the service said of an upload (`uploaded to
    the service`), or empty (no cache configured, or not needed)."""
    source: str = ""
    """Where a restored environment came from: `plugin cache` (the folder) or `service`."""


@dataclass(frozen=True)
class PluginEnv:
    """One plugin's environment as this run sees it."""

    plugin: Plugin
    venv: Path
    wanted: str | None
    """The fingerprint its `pip_url` asks for; None when only Meltano can tell."""
    found: str | None
    """The fingerprint of the environment at `venv`, if there is a usable one."""
    uncacheable: str
    """Why it may not go to (or come from) the cache; empty when it may."""

    @property
    def label(self) -> str:
        """`<type>/<name>`, as Meltano lays out `.meltano`."""
        return f"{self.plugin.kind}/{self.plugin.name}"

    def needs(self) -> str | None:
        """Why it must be installed or restored; None when it is reusable as it is."""
        if self.wanted is None:
            return "its pip_url names a variable only Meltano resolves"
        if self.found is None:
            return "it is not installed here"
        if self.found != self.wanted:
            return "its pip_url or Python changed since it was installed"
        return None


@dataclass(frozen=True)
class Interpreter:
    """The Python that builds plugin environments (Meltano's), as the cache keys it."""

    path: str
    version: str
    """`major.minor`, for `MELTANO__PYTHON_VERSION`."""
    identity: str
    platform: str


@functools.cache
def interpreter(path: str) -> Interpreter:
    """Ask `path` what it is, once per run (about 30 ms)."""
    code = (
        "import json, os, platform, sys, sysconfig; print(json.dumps({"
        "'v': '%d.%d' % sys.version_info[:2], "
        "'id': sys.implementation.name + '-' + platform.python_version() + ' ' + "
        "os.path.realpath(getattr(sys, '_base_executable', sys.executable)), "
        "'platform': sysconfig.get_platform() + ' ' + '-'.join(platform.libc_ver())}))"
    )
    out = subprocess.run(  # noqa: S603 - Meltano's own interpreter
        [path, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    data = json.loads(out)
    return Interpreter(path, data["v"], data["id"], data["platform"])


def project_python(root: Path, environ: Mapping[str, str]) -> str | None:
    """The project's Python for new environments, as Meltano's `VenvBackend` picks it:
    the `python` setting (`meltano.yml` or `MELTANO_PYTHON`), else `.python-version`."""
    setting = environ.get("MELTANO_PYTHON") or read_project_yaml(root, "meltano.yml").get("python")
    if isinstance(setting, str) and setting:
        return setting
    try:
        lines = (root / ".python-version").read_text().splitlines()
    except OSError:
        return None
    return (lines[0].strip() or None) if lines else None


def environments(
    root: Path, environ: Mapping[str, str], meltano_python: Callable[[], str]
) -> tuple[list[PluginEnv], list[PluginEnv]]:
    """The project's plugin environments: those decided from their `pip_url`, and the
    Hub plugins without a lock file, which can only be reused or installed.

    `meltano_python` finds Meltano's interpreter; it is asked only when a plugin names its
    own Python or a variable, so a project of plain `pip_url`s is decided without it."""
    system = SystemDir.of(root, environ)
    default_python = project_python(root, environ)
    decided: list[PluginEnv] = []
    seen: set[tuple[str, str]] = set()
    for plugin in project_plugins(root):
        if (plugin.kind, plugin.venv_name) in seen:
            continue  # an inheriting plugin that shares its parent's environment
        seen.add((plugin.kind, plugin.venv_name))
        if not (_SAFE_NAME.match(plugin.kind) and _SAFE_NAME.match(plugin.venv_name)):
            continue  # Meltano refuses such names; nothing of ours may follow them
        venv = system.venv(plugin.kind, plugin.venv_name)
        python = plugin.python or default_python
        try:
            version = interpreter(meltano_python()).version if "$" in plugin.pip_url else ""
            args = pip_install_args(plugin.pip_url, environ, version)
            wanted: str | None = fingerprint(args, python, meltano_python() if python else "")
        except UnresolvedPipUrl:
            wanted, args = None, []
        why = uncacheable(plugin, args, python) if wanted else "only Meltano can tell its pip_url"
        decided.append(PluginEnv(plugin, venv, wanted, read_fingerprint(venv), why))
    hub = [
        PluginEnv(
            Plugin(kind, name, ""),
            system.venv(kind, name),
            None,
            read_fingerprint(system.venv(kind, name)),
            "Meltano Hub gives its pip_url",
        )
        for kind, name in unlocked_hub_plugins(root)
        if _SAFE_NAME.match(kind) and _SAFE_NAME.match(name)
    ]
    return decided, hub


def uncacheable(plugin: Plugin, args: list[str], python: str | None) -> str:
    """Why an environment may not be shared through the cache, or "" when it may.

    The cache never holds a secret: a requirement with credentials in its URL (pip may
    record it in the environment's `direct_url.json`) or one that came from a variable is
    not cached. A `git+` ref that is not a commit can move under the same `pip_url`, and a
    plugin's own Python is not the one the key describes; neither is cached either."""
    if plugin.kind == "files":
        return "a file bundle writes into the project when it installs"
    if "$" in plugin.pip_url:
        return "its pip_url takes a variable, which may hold a secret"
    if python:
        return "it names its own Python"
    for arg in args:
        url = requirement_url(arg)  # `name @ URL`, and `name@git+URL` too
        try:
            if urllib.parse.urlsplit(url.removeprefix("git+")).username:
                return "its pip_url carries credentials"
        except ValueError:
            return "its pip_url holds a URL that cannot be read"
        try:
            requirement = parse(plugin.name, arg) if "git+" in arg else None
        except PluginSourceError:
            return "its git source needs git"
        if requirement is not None and not _COMMIT.match(requirement.ref):
            return "its git ref is not a commit SHA, so its source can change"
    return ""


def cache_key(env: PluginEnv, meltano_python: str) -> EntryKey | None:
    """The cache entry `env` would be, or None when it may not be cached."""
    if env.uncacheable or env.wanted is None:
        return None
    found = interpreter(meltano_python)
    return EntryKey(env.wanted, found.identity, found.platform, str(env.venv))


def compile_bytecode(venv: Path) -> None:
    """Compile the environment's modules before it goes to the cache: uv (Meltano's
    default installer) writes no bytecode, so every container restoring an entry would
    otherwise compile the plugin's modules on its first import (0.8 s for an SDK tap)."""
    python = venv / "bin" / "python"
    folders = [str(p) for p in (venv / "lib").glob("python*/site-packages")]
    if not python.exists() or not folders:
        return
    subprocess.run(  # noqa: S603 - the plugin's own interpreter, on its own files
        [str(python), "-m", "compileall", "-q", "-j", "0", *folders],
        capture_output=True,
        check=False,
        timeout=600,
    )
