"""Plugin environments made ready before the command: reused, restored or installed.

Each plugin is decided on its own (`plugin_envs`): an environment whose Meltano
fingerprint matches is reused, one the plugin cache holds is restored, and only the rest
are installed, by name (`meltano install NAME...`), so a `config set` installs nothing and
a changed `pip_url` reinstalls one plugin. Plugins whose `pip_url` asks git for sources
get them as archives (`plugin_sources`), and Meltano's installer is run through
`pip_rewrite` so pip and uv never need git. Each plugin is logged with what happened, why
and how long it took; a long install says which plugins it is still on. A failure names
the plugin and gives Meltano's own reason.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from client import pip_rewrite
from client.plugin_cache import LOCK_WAIT, EntryKey, PluginCache
from client.plugin_envs import (
    Action,
    PluginEnv,
    PluginReport,
    cache_key,
    compile_bytecode,
    environments,
)
from client.plugin_git_refs import RefResolver, Verdict, check_sources, write_record
from client.plugin_sources import PluginFetcher, PluginSourceError, git_requirements
from client.plugins import Plugin
from client.service_plugin_cache import LEASE_WAIT, PluginEnvRemote, ServicePluginCache
from client.settings import InstallPolicy, Settings, SettingsError
from client.subprocesses import KEEP_LINES, run_child
from providers.config import ForgeConfig

log = logging.getLogger(__name__)
PROGRESS_EVERY = 15.0
"""Seconds between "still installing" lines during a long install."""


def prepare_plugins(
    root: Path,
    settings: Settings,
    env: dict[str, str],
    *,
    quiet_stdout: bool,
    remote: object = None,
) -> tuple[int, list[PluginReport]]:
    """Make every plugin environment ready; Meltano's exit code (0 when nothing needed
    installing) and one report per plugin. `remote` is the run's forge: in service mode
    (`PluginEnvRemote`), the service's plugin cache is a tier after the folder's."""
    if settings.install is InstallPolicy.NEVER:
        return 0, []
    python = _lazy(lambda: meltano_python(settings.meltano_bin))
    decided, hub = environments(root, env, python)
    # `always` means install: the caches are then only filled, never restored from.
    always = settings.install is InstallPolicy.ALWAYS
    cache = (
        PluginCache(settings.plugin_cache, settings.plugin_cache_max_bytes)
        if settings.plugin_cache
        else None
    )
    if cache is not None and not cache.writable:
        log.info("the plugin cache %s is read-only here: restoring only", settings.plugin_cache)
    service = ServicePluginCache(remote) if isinstance(remote, PluginEnvRemote) else None
    tiers: list[Tier] = [t for t in (cache, service) if t is not None]
    reports: dict[str, PluginReport] = {}
    pending: list[tuple[PluginEnv, str]] = []
    refs = RefResolver(functools.cache(lambda: _forge_config(settings)), settings.limits)
    clean: set[str] = set()
    for item in [*decided, *hub]:
        why = _why_install(item, settings.install)
        reused = _why_reused(item)
        verdict = _git_verdict(item, env, refs) if why is None else None
        if verdict is not None:
            if verdict.warning:
                log.warning("%s '%s': %s", _kind(item), item.plugin.name, verdict.warning)
            if verdict.install:  # same pip_url, other source: Meltano must not keep it
                why = verdict.install
                clean.add(item.label)
            reused += verdict.reused
        if why is None:
            reports[item.label] = PluginReport(
                item.plugin.kind, item.plugin.name, Action.REUSED, reused
            )
        else:
            pending.append((item, why))
    _announce(reports, pending)
    for tier in [] if always else tiers:
        pending = _restore(tier, pending, reports, python)
    code = 0
    if pending:
        keys = [k for e, _ in pending if cache and (k := cache_key(e, python())) is not None]
        claim = cache.claim(keys, _waiting(pending)) if cache and keys else nullcontext()
        with claim:
            if cache is not None and not always:
                pending = _restore(cache, pending, reports, python)  # filled while we waited
            if pending:
                fill = Fill(root, settings, env, reports, quiet_stdout, cache, python, clean)
                code = fill.through(service, pending) if service else fill.install(pending)
    for report in reports.values():
        _log(report)
    return code, list(reports.values())


_UPLOADS: list[threading.Thread] = []
"""Uploads to the service still under way (`Fill._upload_meanwhile`)."""


def finish_uploads() -> None:
    """Wait for this run's uploads to the service's plugin cache (its report then says
    how each went). A process that never calls it still waits for them as it exits."""
    while _UPLOADS:
        _UPLOADS.pop().join()


class Tier(Protocol):
    """Where environments are restored from: the folder cache or the service's."""

    def restore(self, key: EntryKey, venv: Path) -> bool:
        """Put the entry at `venv`, verified; False when it cannot."""


@dataclass
class Fill:
    """Installing what no cache held, and filling the caches with it."""

    root: Path
    settings: Settings
    env: dict[str, str]
    reports: dict[str, PluginReport]
    quiet_stdout: bool
    cache: PluginCache | None
    python: Callable[[], str]
    clean: set[str] = field(default_factory=set)
    """Labels installed afresh (`--clean`): their git source moved under the same pip_url."""

    def install(self, pending: list[tuple[PluginEnv, str]]) -> int:
        """Install `pending` and store them in the folder cache."""
        code = _install(
            self.root,
            self.settings,
            self.env,
            pending,
            self.reports,
            self.quiet_stdout,
            self.clean,
        )
        if code == 0 and self.cache is not None:
            _store(self.cache, pending, self.reports, self.python)
        return code

    def through(self, service: ServicePluginCache, pending: list[tuple[PluginEnv, str]]) -> int:
        """Install `pending` under the service's leases: what this run is granted (and
        what cannot be cached) is installed and uploaded at once; what another runner is
        installing is waited for, then restored (or installed, if that runner failed)."""
        always = self.settings.install is InstallPolicy.ALWAYS
        deadline = time.monotonic() + LOCK_WAIT
        wait, told = 0.0, False
        while pending:
            keys = {e.label: cache_key(e, self.python()) for e, _ in pending}
            states = service.leases([k.digest for k in keys.values() if k], wait)
            late = time.monotonic() > deadline
            now, stored, held = [], [], []
            for item, why in pending:
                key = keys[item.label]
                state = states.get(key.digest) if key and states is not None else None
                if state == "stored" and not always:
                    stored.append((item, why))
                elif state == "held" and not (always or late):
                    held.append((item, why))
                else:
                    now.append((item, why))
            now += _restore(service, stored, self.reports, self.python)
            granted = {
                k.digest for k in keys.values() if k and (states or {}).get(k.digest) == "granted"
            }
            if now:
                with service.renewing(granted):
                    code = self.install(now)
                if code != 0:
                    service.release(granted)
                    return code
                self._upload_meanwhile(service, now, keys, granted)
            if held and not told:
                names = ", ".join(e.plugin.name for e, _ in held)
                log.info("waiting for another runner that is installing %s for the service", names)
                told = True
            pending, wait = held, LEASE_WAIT
        return 0

    def _upload_meanwhile(
        self,
        service: ServicePluginCache,
        installed: list[tuple[PluginEnv, str]],
        keys: dict[str, EntryKey | None],
        granted: set[str],
    ) -> None:
        """Upload what this run installed while its command starts: runners waiting on
        the leases get the entries as soon as they would otherwise, and this one does
        not wait for the compile, the archive and the upload (`finish_uploads` joins)."""
        for item, _ in installed:
            key = keys[item.label]
            if key is not None and key.digest in granted:
                report = self.reports[item.label]
                report.cache = "; ".join(filter(None, [report.cache, "uploading to the service"]))

        def upload() -> None:
            with service.renewing(granted):
                self._upload(service, installed, keys, granted)

        thread = threading.Thread(target=upload, name="plugin-env-upload")
        _UPLOADS.append(thread)
        thread.start()

    def _upload(
        self,
        service: ServicePluginCache,
        installed: list[tuple[PluginEnv, str]],
        keys: dict[str, EntryKey | None],
        granted: set[str],
    ) -> None:
        for item, _ in installed:
            report = self.reports[item.label]
            key = keys[item.label]
            if key is None:
                report.cache = report.cache or f"not cached: {item.uncacheable}"
                continue
            if key.digest not in granted:
                continue
            manifest = self.cache.manifest(key) if self.cache is not None else None
            if manifest is None:
                compile_bytecode(item.venv)
            packed = (
                (self.cache.entries / f"{key.digest}.tar", manifest.sha256)
                if self.cache is not None and manifest is not None
                else None
            )
            started = time.monotonic()
            said = service.upload(key, item.venv, item.label, packed)
            said += f" in {time.monotonic() - started:.1f}s"
            before = report.cache.removesuffix("uploading to the service").rstrip("; ")
            report.cache = f"{before}; {said}" if before else said
            log.info("%s '%s': %s", KINDS.get(report.type, report.type), report.name, said)


def _why_install(item: PluginEnv, policy: InstallPolicy) -> str | None:
    if policy is InstallPolicy.ALWAYS:
        return "MELTANO_FORGE_INSTALL=always"
    if not item.plugin.pip_url:  # a Hub plugin without a lock file: reusable if installed
        return None if item.found else "it is not installed here"
    return item.needs()


def _forge_config(settings: Settings) -> ForgeConfig | None:
    return settings.forge_config() if settings.repo else None


def _git_verdict(item: PluginEnv, env: dict[str, str], refs: RefResolver) -> Verdict | None:
    """What the plugin's moving `git+` refs say (None: it has none; nothing is asked)."""
    if not item.plugin.pip_url or "git+" not in item.plugin.pip_url:
        return None
    try:
        requirements = git_requirements([item.plugin], env)
    except PluginSourceError:
        return None  # it cannot be installed without git either; that install says why
    return check_sources(item.venv, requirements, refs)


def _record_sources(
    pending: list[tuple[PluginEnv, str]],
    reports: dict[str, PluginReport],
    env: dict[str, str],
    resolved: dict[str, str],
) -> None:
    """Write, into each installed plugin's environment, the commit each of its `git+`
    requirements resolved to (`plugin_git_refs` compares it with the ref next run)."""
    for item, _ in pending:
        if reports[item.label].action is not Action.INSTALLED or not item.plugin.pip_url:
            continue
        tokens = [r.token for r in git_requirements([item.plugin], env)]
        shas = {t: resolved[t] for t in tokens if t in resolved}
        if shas and item.venv.is_dir():
            try:
                write_record(item.venv, shas)
            except OSError as exc:
                log.warning(
                    "the git source of %s '%s' could not be recorded (%s). Its next run "
                    "cannot tell whether its branch moved; check that %s is writable",
                    _kind(item),
                    item.plugin.name,
                    exc.strerror,
                    item.venv,
                )


def _kind(item: PluginEnv) -> str:
    return KINDS.get(item.plugin.kind, item.plugin.kind)


def _why_reused(item: PluginEnv) -> str:
    if not item.plugin.pip_url:
        return "it is installed; Meltano Hub gives its pip_url (`meltano lock` pins it)"
    return "its environment matches its pip_url"


def _announce(reports: dict[str, PluginReport], pending: list[tuple[PluginEnv, str]]) -> None:
    reused = len(reports)
    if not pending:
        detail = f"{reused} reused" if reused else "no plugin has a pip_url"
        log.info("installing plugins: none needed (%s)", detail)
        return
    names = ", ".join(f"{e.plugin.name} ({why})" for e, why in pending)
    log.info("installing plugins: %s%s", names, f"; {reused} reused" if reused else "")


def _restore(
    tier: Tier,
    pending: list[tuple[PluginEnv, str]],
    reports: dict[str, PluginReport],
    python: Callable[[], str],
) -> list[tuple[PluginEnv, str]]:
    left = []
    remote = isinstance(tier, ServicePluginCache)
    for item, why in pending:
        key = cache_key(item, python())
        started = time.monotonic()
        if key is not None and tier.restore(key, item.venv):
            reports[item.label] = PluginReport(
                item.plugin.kind,
                item.plugin.name,
                Action.RESTORED,
                f"{why}; the {'service' if remote else 'plugin'} cache holds it",
                round(time.monotonic() - started, 2),
                source="service" if remote else "plugin cache",
            )
        else:
            left.append((item, why))
    return left


def _store(
    cache: PluginCache,
    installed: list[tuple[PluginEnv, str]],
    reports: dict[str, PluginReport],
    python: Callable[[], str],
) -> None:
    for item, _ in installed:
        report = reports[item.label]
        key = cache_key(item, python())
        if key is None:
            report.cache = f"not cached: {item.uncacheable}"
        elif cache.writable and cache.manifest(key) is None:
            compile_bytecode(item.venv)
            if cache.store(key, item.venv, item.label) is not None:
                report.cache = "stored"


def _waiting(pending: list[tuple[PluginEnv, str]]) -> str:
    names = ", ".join(e.plugin.name for e, _ in pending)
    return f"waiting for another runner that is installing {names} into the plugin cache"


def _log(report: PluginReport) -> None:
    kind = KINDS.get(report.type, report.type)
    action = report.action.value
    if report.source == "service":
        action += " from the service cache"
    timing = f" in {report.seconds:.1f}s" if report.seconds else ""
    cache = f"; {report.cache}" if report.cache else ""
    log.info("%s '%s': %s%s (%s%s)", kind, report.name, action, timing, report.why, cache)


def _install(
    root: Path,
    settings: Settings,
    env: dict[str, str],
    pending: list[tuple[PluginEnv, str]],
    reports: dict[str, PluginReport],
    quiet_stdout: bool,
    clean: set[str] | None = None,
) -> int:
    """`meltano install` of exactly the pending plugins (git sources as archives); those
    in `clean` (labels) afresh, as their source moved under an unchanged fingerprint."""
    plugins = [e.plugin for e, _ in pending]
    everything = settings.install is InstallPolicy.ALWAYS
    requirements = git_requirements([p for p in plugins if p.pip_url], env)
    by_plugin = {r.plugin: r for r in requirements}
    for plugin in plugins:
        source = by_plugin.get(plugin.name)
        via = (
            f" from {source.host}/{source.path}@{source.ref} (an archive, no git)" if source else ""
        )
        log.info("installing %s '%s'%s", KINDS.get(plugin.kind, plugin.kind), plugin.name, via)
    prefix: list[str] = [settings.meltano_bin]
    resolved: dict[str, str] = {}
    if requirements:
        fetcher = PluginFetcher(root, _forge_config(settings), settings.limits, resolved=resolved)
        swaps = fetcher.rewrites(requirements)
        prefix = [meltano_python(settings.meltano_bin), pip_rewrite.__file__]
        env = {**env, pip_rewrite.REWRITE: json.dumps(swaps)}
    output = InstallLog([p.name for p in plugins])
    started = time.monotonic()
    code = 0
    with output.ticking():
        for names in [[]] if everything else _clean_calls(plugins, clean or set()):
            code = run_child(
                [*prefix, "install", *names], root, env, quiet_stdout=quiet_stdout, capture=output
            )
            if code != 0:
                break
    total = round(time.monotonic() - started, 2)
    for item, why in pending:
        ok = code == 0 or item.plugin.name in output.finished
        reports[item.label] = PluginReport(
            item.plugin.kind,
            item.plugin.name,
            Action.INSTALLED if ok else Action.FAILED,
            why,
            output.seconds.get(item.plugin.name, total),
        )
    if requirements:
        _record_sources(pending, reports, env, resolved)
    if code != 0:
        log.error("%s", failure(plugins, output, code))
    return code


def _clean_calls(plugins: list[Plugin], clean: set[str]) -> list[list[str]]:
    """`_calls`, with the plugins in `clean` (labels) in calls of their own, `--clean`."""
    fresh = [p for p in plugins if f"{p.kind}/{p.name}" in clean]
    kept = [p for p in plugins if p not in fresh]
    return [
        *(_calls(kept) if kept else []),
        *(["--clean", *names] for names in (_calls(fresh) if fresh else [])),
    ]


def _calls(plugins: list[Plugin]) -> list[list[str]]:
    """`install` arguments naming exactly `plugins`: one call by name, or one per type
    when a name is used by two types (Meltano would install both)."""
    names = [p.name for p in plugins]
    if len(set(names)) == len(names):
        return [names]
    kinds = dict.fromkeys(p.kind for p in plugins)
    return [["--plugin-type", kind, *[p.name for p in plugins if p.kind == kind]] for kind in kinds]


_STATUS = re.compile(r"\b(Installing|Installed|Updated) [a-z][a-z ]* '([^']+)'")


class InstallLog(list[str]):
    """The installer's last lines (for `failure`), read as they come: Meltano says when
    each plugin starts and ends, which gives each its own time, and a ticker says which
    plugins a long install is still on."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.finished: set[str] = set()
        self.begun = time.monotonic()

    def append(self, line: str) -> None:
        """One line of the installer's output."""
        super().append(line)
        del self[:-KEEP_LINES]
        found = _STATUS.search(line)
        if found is None:
            return
        verb, name = found.groups()
        now = time.monotonic()
        if verb == "Installing":
            self.started[name] = now
        else:
            self.finished.add(name)
            self.seconds[name] = round(now - self.started.get(name, self.begun), 2)

    def ticking(self, every: float = PROGRESS_EVERY) -> _Ticker:
        """A context in which a line says, every `every` seconds, what is still installing."""
        return _Ticker(self, every)


class _Ticker:
    def __init__(self, output: InstallLog, every: float) -> None:
        self.output = output
        self.every = every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            output = self.output
            left = [n for n in output.names if n not in output.finished]
            elapsed = time.monotonic() - output.begun
            log.info("still installing %s (%.0fs so far)", ", ".join(left), elapsed)


def _lazy(find: Callable[[], str]) -> Callable[[], str]:
    """`find`, asked at most once."""
    return functools.cache(find)


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
