"""`meltano install`, when the plugin set changed, and without git.

The install key hashes everything that decides the plugin set: `meltano.yml`, its
`include_paths` files, `plugins/**/*.lock` and requirements files; the install runs only
when it changed. Plugins whose `pip_url` asks git for sources get them as archives
(`plugin_sources`), and Meltano's installer is run through `pip_rewrite` so pip and uv
never need git. Each plugin is named as it is installed; a failure names the plugin and
gives Meltano's own reason.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from client import pip_rewrite
from client.manifest import STATE_DIR
from client.plugin_sources import PluginFetcher, git_requirements
from client.plugins import Plugin, lock_files, project_files, project_plugins
from client.settings import InstallPolicy, Settings, SettingsError
from client.subprocesses import run_child

log = logging.getLogger(__name__)
INSTALL_KEY_FILE = "install.json"


def install_key(root: Path) -> str:
    """Hash of everything that decides the plugin set."""
    digest = hashlib.sha256()
    files = {*project_files(root), *lock_files(root)}
    files.update(os.path.relpath(p, root) for p in glob.glob(str(root / "requirements*.txt")))
    for rel in sorted(files):
        path = root / rel
        if path.is_file():
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def needs_install(root: Path, policy: InstallPolicy) -> bool:
    """Whether `meltano install` should run before the command."""
    if policy is InstallPolicy.NEVER:
        return False
    if policy is InstallPolicy.ALWAYS:
        return True
    stored = root / STATE_DIR / INSTALL_KEY_FILE
    if not stored.exists():
        return True
    return bool(json.loads(stored.read_text()).get("key") != install_key(root))


def remember_install(root: Path) -> None:
    """Record the plugin set that was installed."""
    (root / STATE_DIR).mkdir(exist_ok=True)
    (root / STATE_DIR / INSTALL_KEY_FILE).write_text(json.dumps({"key": install_key(root)}))


def install(root: Path, settings: Settings, env: dict[str, str], *, quiet_stdout: bool) -> int:
    """Install the project's plugins (git sources as archives); Meltano's exit code."""
    plugins = project_plugins(root)
    requirements = git_requirements(plugins, env)
    by_plugin = {r.plugin: r for r in requirements}
    for plugin in plugins:
        source = by_plugin.get(plugin.name)
        via = (
            f" from {source.host}/{source.path}@{source.ref} (an archive, no git)" if source else ""
        )
        kind = KINDS.get(plugin.kind, plugin.kind)
        log.info("installing %s '%s'%s", kind, plugin.name, via)
    command: list[str] = [settings.meltano_bin, "install"]
    if requirements:
        config = settings.forge_config() if settings.repo else None
        swaps = PluginFetcher(root, config, settings.limits).rewrites(requirements)
        command = [meltano_python(settings.meltano_bin), pip_rewrite.__file__, "install"]
        env = {**env, pip_rewrite.REWRITE: json.dumps(swaps)}
    output: list[str] = []
    code = run_child(command, root, env, quiet_stdout=quiet_stdout, capture=output)
    if code != 0:
        log.error("%s", failure(plugins, output, code))
    return code


def meltano_python(meltano_bin: str) -> str:
    """The interpreter that runs `meltano` (its script's shebang), to run Meltano's own
    CLI in it with the installer's requirements swapped."""
    found = shutil.which(meltano_bin)
    if found is None:
        msg = f"`{meltano_bin}` was not found on PATH"
        raise SettingsError(msg + "; install Meltano, or set MELTANO_FORGE_MELTANO_BIN")
    with open(found, "rb") as handle:
        first = handle.readline().decode("utf-8", "replace").strip()
    interpreter = first.removeprefix("#!").split()[0] if first.startswith("#!") else ""
    if "python" not in Path(interpreter).name:
        if "python" in Path(found).name:
            return found
        msg = f"cannot tell which Python runs `{found}` (its first line is {first!r})"
        raise SettingsError(msg + "; set MELTANO_FORGE_MELTANO_BIN to Meltano's own script")
    return interpreter or sys.executable


KINDS = {
    "extractors": "extractor",
    "loaders": "loader",
    "utilities": "utility",
    "transformers": "transformer",
    "orchestrators": "orchestrator",
    "mappers": "mapper",
    "files": "file bundle",
}


def failure(plugins: Sequence[Plugin], output: list[str], code: int) -> str:
    """Meltano's own reason (the installer's causes, else its error lines), naming the
    plugin whose install failed."""
    lines = [line.strip().strip("│").strip() for line in output]
    causes = [line.removeprefix("cause:").strip() for line in lines if line.startswith("cause:")]
    errors = [line for line in lines if "[error" in line or line.startswith("error")]
    names = [p.name for p in plugins]
    failed = [n for n in names if any(f"'{n}'" in line for line in lines)] or names
    reason = "; ".join(causes[-3:]) or (errors[-1] if errors else "") or f"exit code {code}"
    return f"meltano install failed for {', '.join(repr(n) for n in failed)}: {reason}"
