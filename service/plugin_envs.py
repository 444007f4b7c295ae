"""The plugin environment cache the service holds for its runners (service mode).

A cold runner restores a plugin's virtualenv from here instead of installing it; the
first runner to need an entry installs it once and uploads it, while the others wait on
its lease and then restore. Entries are `client.plugin_cache`'s own (an archive and its
manifest, verified by SHA-256, published atomically, evicted least recently used first),
kept in `MELTANO_FORGE_SERVICE_PLUGIN_CACHE`, so a folder cache and the service hold the
same bytes under the same rules.

**Trust.** An entry's key (Meltano's fingerprint, the Python, the platform, the path) says
what an environment should be, not what an upload holds: builds are not reproducible, so
the service cannot check an upload against its key. Entries are therefore **per
project**: a token can read and write only the entries of projects it may act on, so a
runner with a write token of project A can never place an environment that a runner of
project B restores, and a project's uploads never evict another's (each project has its
own size bound). Within a project, a write token may publish an entry every runner of
that project restores, the trust a shared `MELTANO_FORGE_PLUGIN_CACHE` volume asks of
whoever can write it. What the service checks on every upload: the key matches the
fields sent with it, the SHA-256 matches, the body stays under
`MELTANO_FORGE_SERVICE_PLUGIN_ENV_MAX_BYTES`, and every member passes the checks a
restore applies (inside its folder, each name once, never named by or through a link,
files, folders and links only; a restore also clears setuid bits and owners).
An entry already made is never replaced.

**Leases.** A runner about to install asks for the leases of the entries it lacks, all in
one request; each is `stored` (restore it), `granted` (install and upload it; the lease is
the runner's until it uploads, releases it, or stops renewing it for
`MELTANO_FORGE_SERVICE_PLUGIN_LEASE_SECONDS`, so a killed runner holds nothing for long),
or `held` (another runner is installing it: ask again, waiting up to `LEASE_WAIT_MAX`
seconds for it to change). A lease is renewed for at most `LEASE_MAX_AGE` seconds after it
was first granted: past that its holder's request is answered `held` and renews nothing,
so a runner (or a write token) asking again and again cannot keep the others waiting
forever; once it lapses another runner takes it. One request decides all its keys under
their locks, so the first of many cold runners gets the whole plugin set and the rest
wait. Leases are files beside the entries, so replicas that share the folder share them.

**No secret** reaches the cache: a runner uploads one plugin's virtualenv folder and
nothing else, and only for plugins `client.plugin_envs.uncacheable` allows.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from client.plugin_cache import (
    LOCK_WAIT,
    STALE_TEMP,
    EntryKey,
    Manifest,
    PluginCache,
    mark_used,
)

LEASE_WAIT_MAX = 30.0
"""Seconds a lease request may wait for another runner's install to end."""
LEASE_MAX_AGE = LOCK_WAIT
"""Seconds after its first grant past which a lease is renewed no more: as long as a cold
runner waits for another's install (`client.plugin_cache.LOCK_WAIT`, 1800 s) before
installing alone, far beyond any plugin's install."""
DIGEST = r"^[0-9a-f]{64}$"
PLUGIN = r"^[A-Za-z0-9_][A-Za-z0-9._-]*/[A-Za-z0-9_][A-Za-z0-9._-]*$"
"""`<type>/<name>`, as an entry's manifest names its plugin."""
_DIGEST = re.compile(DIGEST)


class LeaseState(enum.StrEnum):
    """What a runner should do about one entry."""

    STORED = "stored"
    GRANTED = "granted"
    HELD = "held"


@dataclass(frozen=True)
class Leases:
    """One lease request's answer."""

    states: dict[str, LeaseState]
    expires_in: float
    """Seconds a granted lease lasts unless renewed (by asking again)."""

    @property
    def settled(self) -> bool:
        """Whether the runner can act on any key (not all are held by others)."""
        return any(s is not LeaseState.HELD for s in self.states.values())


class PluginEnvs:
    """The service's plugin cache: one `PluginCache` folder per project under `root`."""

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        lease_seconds: float,
        max_age: float = LEASE_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.lease_seconds = lease_seconds
        self.max_age = max_age
        """Seconds after its first grant past which a lease is renewed no more."""
        self.clock = clock
        self._caches: dict[str, PluginCache] = {}
        self._lock = threading.Lock()

    def cache(self, project: str) -> PluginCache:
        """The project's cache folder (made on first use)."""
        with self._lock:
            found = self._caches.get(project)
            if found is None or not found.writable:
                found = PluginCache(self.root / project, self.max_bytes)
                self._caches[project] = found
            return found

    def open(self, project: str, digest: str) -> tuple[Manifest, IO[bytes]] | None:
        """The entry's manifest and its archive, opened (an eviction after this does not
        cut the answer short); None when there is none. Marks it used."""
        cache = self.cache(project)
        manifest = cache.manifest_of(digest)
        if manifest is None:
            return None
        try:
            handle = (cache.entries / f"{digest}.tar").open("rb")
        except FileNotFoundError:
            return None
        with contextlib.suppress(OSError):
            mark_used(cache.entries / f"{digest}.json")
        return manifest, handle

    def upload_path(self, project: str, digest: str) -> Path:
        """Where an upload is written while it arrives (swept if left behind)."""
        return self.cache(project).temp_file(digest)

    def receive(
        self, project: str, key: EntryKey, plugin: str, upload: Path, sha256: str
    ) -> tuple[Manifest, bool]:
        """Verify and publish an upload (`PluginCache.receive`); its lease, whoever holds
        it, ends: the entry exists now."""
        cache = self.cache(project)
        try:
            return cache.receive(key, plugin, upload, sha256)
        finally:
            if cache.manifest(key) is not None:
                self._lease_file(cache, key.digest).unlink(missing_ok=True)

    def leases(self, project: str, holder: str, digests: Collection[str]) -> Leases:
        """Grant (or renew) `holder` the leases of the entries that are neither stored
        nor leased to someone else; say which are which. A lease first granted more than
        `max_age` ago is not renewed: its holder hears `held`, and once it lapses another
        runner takes it. One decision under all the keys' locks, so two requests never
        split a plugin set."""
        cache = self.cache(project)
        keys = sorted({d for d in digests if _DIGEST.match(d)})
        states: dict[str, LeaseState] = {}
        now = self.clock()
        with cache.locked(keys):
            for digest in keys:
                path = self._lease_file(cache, digest)
                if cache.manifest_of(digest) is not None:
                    states[digest] = LeaseState.STORED
                    path.unlink(missing_ok=True)
                    continue
                current = _read_lease(path)
                if current is not None and current.holder != holder and current.expires > now:
                    states[digest] = LeaseState.HELD
                    continue
                if current is not None and current.holder == holder:
                    if now - current.granted > self.max_age:
                        states[digest] = LeaseState.HELD
                        continue
                    granted = current.granted
                else:
                    granted = now
                _write_lease(path, _Lease(holder, now + self.lease_seconds, granted))
                states[digest] = LeaseState.GRANTED
        self._sweep(cache, now)
        return Leases(states, self.lease_seconds)

    def peek(self, project: str, holder: str, digests: Collection[str]) -> bool:
        """Whether a lease request would now find something to act on (an entry stored,
        a lease ended), read without locks: the long poll's cheap check."""
        cache = self.cache(project)
        now = self.clock()
        for digest in digests:
            if not _DIGEST.match(digest):
                continue
            if cache.manifest_of(digest) is not None:
                return True
            current = _read_lease(self._lease_file(cache, digest))
            if current is None:
                return True
            if current.holder == holder:
                if now - current.granted <= self.max_age:
                    return True
            elif current.expires <= now:
                return True
        return False

    def release(self, project: str, holder: str, digests: Collection[str]) -> None:
        """End `holder`'s leases of `digests` (an install that failed): waiters go on."""
        cache = self.cache(project)
        keys = sorted({d for d in digests if _DIGEST.match(d)})
        with cache.locked(keys):
            for digest in keys:
                path = self._lease_file(cache, digest)
                current = _read_lease(path)
                if current is not None and current.holder == holder:
                    path.unlink(missing_ok=True)

    @staticmethod
    def _lease_file(cache: PluginCache, digest: str) -> Path:
        return cache.locks / f"{digest}.lease"

    @staticmethod
    def _sweep(cache: PluginCache, now: float) -> None:
        """Lease files long expired (their entries never came) go."""
        for path in cache.locks.glob("*.lease"):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > STALE_TEMP:
                    path.unlink()


@dataclass(frozen=True)
class _Lease:
    """One lease file: who holds it, until when, and when it was first granted."""

    holder: str
    expires: float
    granted: float


def _read_lease(path: Path) -> _Lease | None:
    try:
        data = json.loads(path.read_text())
        expires = float(data["expires"])
        # A lease written before `granted` was recorded counts from its last renewal.
        granted = float(data.get("granted", expires))
        return _Lease(str(data["holder"]), expires, granted)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_lease(path: Path, lease: _Lease) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temp.write_text(
        json.dumps({"holder": lease.holder, "expires": lease.expires, "granted": lease.granted})
    )
    temp.rename(path)
