"""A plugin environment cache that many runners share (`MELTANO_FORGE_PLUGIN_CACHE`).

A fresh container restores a plugin's virtualenv from here instead of installing it. The
folder is meant to be a volume that many containers mount (a PersistentVolume, EFS, a
node's disk), so every rule below holds with several writers and killed ones:

- **An entry is one archive and one manifest**, `entries/<key>.tar` and
  `entries/<key>.json`. The manifest is written last, so an entry without one does not
  exist. The key (`EntryKey`) is everything that makes a virtualenv reusable: Meltano's
  fingerprint, the Python that built it (version and base interpreter), the platform, and
  the path it lives at (virtualenvs are not relocatable: their scripts name it). A service
  can hold and serve the same two files.
- **Verified before use.** The archive is unpacked beside the target while its SHA-256 is
  computed, and moved into place only when it matches the manifest; a corrupt or
  partial entry is removed (when the cache is writable) and the plugin is installed.
- **One install per entry.** Filling an entry holds `locks/<key>.lock` with `flock`, which
  the kernel releases when its holder dies, even by SIGKILL; whoever waited then finds
  the entry made, or makes it.
- **Read-only works.** A cache the runner cannot write is read from and never locked.
- **Bounded.** Past `max_bytes` (default `DEFAULT_MAX_BYTES`), the least recently used
  entries go; a restore marks an entry used.
- **No secret in it.** An entry holds one plugin's virtualenv folder and nothing else:
  never `.env`, `.meltano/run` or the system database. A plugin whose `pip_url` carries a
  credential is not cached at all (`plugin_envs.cacheable`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import tarfile
import time
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Protocol

log = logging.getLogger(__name__)

FORMAT = 1
"""The layout version: entries of another format are never read."""
DEFAULT_MAX_BYTES = 10 * 1024**3
"""10 GiB: about a hundred SDK plugin environments (40 to 120 MB each)."""
LOCK_WAIT = 1800.0
"""Seconds to wait for another runner filling the same entry before installing alone."""
STALE_TEMP = 3600.0
"""Seconds after which a temporary file (a killed writer's) is swept."""
CHUNK = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class Readable(Protocol):
    """What an archive is read from: a file, or an answer's bytes as they come."""

    def read(self, n: int = -1, /) -> bytes:
        """At most `n` bytes; b"" at the end."""


class EntryRefused(ValueError):
    """An archive that may not become an entry: it does not verify."""


@dataclass(frozen=True)
class EntryKey:
    """What makes a plugin environment reusable somewhere else."""

    fingerprint: str
    """Meltano's fingerprint of the plugin's pip arguments (`client.fingerprint`)."""
    python: str
    """The building interpreter's version, implementation and base executable."""
    platform: str
    """`sysconfig.get_platform()` and the C library, as that interpreter reports them."""
    venv: str
    """The absolute path the environment lives at."""

    @property
    def digest(self) -> str:
        """The entry's name: a SHA-256 of the format and every field."""
        text = json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """`entries/<key>.json`: what the archive is and how to check it."""

    format: int
    key: str
    sha256: str
    size: int
    plugin: str
    """`<type>/<name>`, for people looking at the cache."""
    fingerprint: str
    python: str
    platform: str
    venv: str
    created: float


class PluginCache:
    """One cache folder; see the module docstring for its rules."""

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.entries = folder / f"v{FORMAT}" / "entries"
        self.locks = folder / f"v{FORMAT}" / "locks"
        self.temp = folder / f"v{FORMAT}" / "tmp"
        self.writable = self._prepare()

    def _prepare(self) -> bool:
        """Make the layout if we may; a cache we cannot write is read-only for this run."""
        try:
            for path in (self.entries, self.locks, self.temp):
                path.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return all(os.access(p, os.W_OK) for p in (self.entries, self.locks, self.temp))

    def manifest(self, key: EntryKey) -> Manifest | None:
        """The entry's manifest, or None when there is no (readable, current) entry."""
        return self.manifest_of(key.digest)

    def manifest_of(self, digest: str) -> Manifest | None:
        """The manifest of the entry named `digest` (`EntryKey.digest`), or None."""
        if not _DIGEST.match(digest):
            return None
        try:
            data = json.loads((self.entries / f"{digest}.json").read_text())
            found = Manifest(**data)
        except (OSError, ValueError, TypeError):
            return None
        if found.format != FORMAT or found.key != digest:
            return None
        return found

    def restore(self, key: EntryKey, venv: Path) -> bool:
        """Put the entry's environment at `venv`, verified; False when there is none or
        it is corrupt (then it is removed, so the next install replaces it)."""
        manifest = self.manifest(key)
        if manifest is None or str(venv) != key.venv:
            return False
        try:
            with (self.entries / f"{key.digest}.tar").open("rb") as raw:
                why = restore_stream(raw, venv, manifest.sha256, manifest.size)
        except FileNotFoundError:
            return False  # evicted between the manifest and the archive
        if why:
            return self._discard(key, manifest, why)
        with contextlib.suppress(OSError):  # read-only: recency is not recorded
            mark_used(self.entries / f"{key.digest}.json")
        return True

    def _discard(self, key: EntryKey, manifest: Manifest, why: str) -> bool:
        log.warning(
            "the plugin cache's entry for %s is corrupt (%s); it is ignored%s",
            manifest.plugin,
            why,
            " and will be replaced" if self.writable else "",
        )
        if self.writable:
            for suffix in (".json", ".tar"):
                (self.entries / f"{key.digest}{suffix}").unlink(missing_ok=True)
        return False

    @contextlib.contextmanager
    def claim(self, keys: list[EntryKey], waiting: str = "") -> Iterator[None]:
        """Hold the locks of `keys` (sorted, so two runners never wait on each other)
        while the caller restores or installs and stores them. A read-only cache claims
        nothing; a lock not had within `LOCK_WAIT` is given up (the caller then installs
        without storing twice: `store` skips an entry that exists)."""
        with self.locked([k.digest for k in keys], waiting):
            yield

    @contextlib.contextmanager
    def locked(self, digests: Collection[str], waiting: str = "") -> Iterator[None]:
        """Hold the entries' locks (by digest, sorted); nothing on a read-only cache."""
        if not self.writable:
            yield
            return
        with contextlib.ExitStack() as held:
            for digest in sorted(set(digests)):
                handle = held.enter_context((self.locks / f"{digest}.lock").open("a"))
                _lock(handle, waiting)
            yield

    def store(self, key: EntryKey, venv: Path, plugin: str) -> Manifest | None:
        """Archive `venv` as the entry for `key` (the folder only: nothing beside it), then
        evict past the size bound; None when the cache is read-only or has it already.
        The caller holds the entry's lock (`claim`)."""
        if not self.writable or self.manifest(key) is not None or str(venv) != key.venv:
            return None
        temp = self.temp_file(key.digest)
        try:
            digest, size = pack(venv, temp)
            manifest = self._publish(temp, key, plugin, digest, size)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            if exc.errno not in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
                raise
            log.warning("the plugin cache could not store %s: %s", plugin, exc.strerror)
            return None
        self.evict(keep={key.digest})
        return manifest

    def temp_file(self, digest: str) -> Path:
        """A new temporary path for an archive on its way in (swept if left behind)."""
        return self.temp / f"{digest}.{os.getpid()}.{time.monotonic_ns()}.tar"

    def receive(
        self, key: EntryKey, plugin: str, upload: Path, sha256: str
    ) -> tuple[Manifest, bool]:
        """Publish an archive someone else made (a runner's upload to the service), which
        waits at `upload` (a `temp_file`): its SHA-256 must be `sha256` and its members
        must pass the same checks as a restore's. An entry already made is never
        replaced: then the upload is dropped and the entry's manifest returned, with
        False. `EntryRefused` (and the upload dropped) when it does not verify."""
        try:
            with upload.open("rb") as raw:
                digest, size = _check_archive(raw)
            if digest != sha256:
                msg = f"its SHA-256 is {digest}, not the {sha256} it was sent with"
                raise EntryRefused(msg)
            with self.locked([key.digest]):
                existing = self.manifest(key)
                if existing is not None:
                    return existing, False
                manifest = self._publish(upload, key, plugin, digest, size)
        except (tarfile.TarError, ValueError) as exc:
            msg = (
                str(exc) if isinstance(exc, EntryRefused) else f"it is not a valid archive ({exc})"
            )
            raise EntryRefused(msg) from None
        finally:
            upload.unlink(missing_ok=True)
        self.evict(keep={key.digest})
        return manifest, True

    def _publish(
        self, archive: Path, key: EntryKey, plugin: str, digest: str, size: int
    ) -> Manifest:
        """Move a verified archive into place, then write its manifest (last: an entry
        without one does not exist)."""
        archive.rename(self.entries / f"{key.digest}.tar")
        manifest = Manifest(
            FORMAT,
            key.digest,
            digest,
            size,
            plugin,
            key.fingerprint,
            key.python,
            key.platform,
            key.venv,
            time.time(),
        )
        _write_atomically(self.entries / f"{key.digest}.json", json.dumps(asdict(manifest)))
        mark_used(self.entries / f"{key.digest}.json")
        return manifest

    def evict(self, keep: Collection[str] = ()) -> list[str]:
        """Remove least recently used entries until the cache fits `max_bytes`; the
        plugins removed. Also sweeps temporary files that killed writers left."""
        if not self.writable:
            return []
        now = time.time()
        for temp in self.temp.glob("*"):
            with contextlib.suppress(OSError):
                if now - temp.stat().st_mtime > STALE_TEMP:
                    temp.unlink()
        entries: list[tuple[float, str, int, str]] = []
        for path in self.entries.glob("*.json"):
            try:
                data = json.loads(path.read_text())
                entries.append((path.stat().st_mtime, path.stem, int(data["size"]), data["plugin"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        total = sum(size for _, _, size, _ in entries)
        removed = []
        for _, digest, size, plugin in sorted(entries):
            if total <= self.max_bytes:
                break
            if digest in keep:
                continue
            (self.entries / f"{digest}.json").unlink(missing_ok=True)
            (self.entries / f"{digest}.tar").unlink(missing_ok=True)
            total -= size
            removed.append(plugin)
        if removed:
            log.info("plugin cache: evicted %s (least recently used)", ", ".join(removed))
        return removed

    def size(self) -> int:
        """Bytes of archives the cache holds."""
        return sum(p.stat().st_size for p in self.entries.glob("*.tar"))


def _lock(handle: IO[str], waiting: str) -> None:
    deadline = time.monotonic() + LOCK_WAIT
    told = False
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told and waiting:
                log.info("%s", waiting)
                told = True
            if time.monotonic() > deadline:
                log.warning("gave up waiting for the plugin cache's lock; installing here")
                return
            time.sleep(0.2)
        else:
            return


class _Hashing:
    """A reader that hashes and counts what passes through it."""

    def __init__(self, raw: Readable) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data


def restore_stream(raw: Readable, venv: Path, sha256: str, size: int) -> str:
    """Unpack an entry's archive from `raw` beside `venv` while hashing it, and move it
    into place only when its SHA-256 and size are `sha256` and `size`; "" when done, else
    why not (then nothing at `venv` changed and nothing is left beside it)."""
    staging = venv.parent / f".{venv.name}.restoring-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        venv.parent.mkdir(parents=True, exist_ok=True)
        digest, got = _unpack(raw, staging)
    except FileNotFoundError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except (OSError, tarfile.TarError, ValueError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        return f"it cannot be read ({exc})"
    if digest != sha256 or got != size:
        shutil.rmtree(staging, ignore_errors=True)
        return "its SHA-256 does not match its manifest"
    shutil.rmtree(venv, ignore_errors=True)
    staging.rename(venv)
    return ""


def check_member(member: tarfile.TarInfo, seen: dict[str, bool]) -> None:
    """Refuse (`ValueError`) a member that would leave its folder: an absolute name or
    `..`, a name made twice, a name through a link an earlier member made, or anything
    but a file, a folder or a link. `seen` holds the names so far (normalised, `./x` is
    `x`), each with whether it is a link; updated here.

    The member is made safe to unpack: its name normalised, its mode stripped of setuid,
    setgid and sticky bits (read, write and exec bits kept), its owner dropped (whoever
    restores owns what it writes). A link's target is not checked (a virtualenv's
    `bin/python` links to its base interpreter, absolutely); since no later member may be
    named by a link or pass through one, nothing is ever written through a link."""
    raw = member.name
    name = posixpath.normpath(raw) if raw else ""
    if not raw or raw.startswith("/") or ".." in raw.split("/") or name in (".", ""):
        msg = f"the member {raw!r} leaves its folder"
        raise ValueError(msg)
    parts = name.split("/")
    if any(seen.get("/".join(parts[:i])) for i in range(1, len(parts))):
        msg = f"the member {raw!r} passes through a link"
        raise ValueError(msg)
    if name in seen:
        msg = f"the member {raw!r} comes twice"
        raise ValueError(msg)
    if not (member.isfile() or member.isdir() or member.issym()):
        msg = f"the member {raw!r} is neither a file, a folder nor a link"
        raise ValueError(msg)
    seen[name] = member.issym()
    member.name = name
    member.mode &= 0o777
    member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""


def _unpack(raw: Readable, staging: Path) -> tuple[str, int]:
    """Unpack the archive into `staging` as a stream, then hash what is left of it.

    Each member is checked and made safe as it comes (`check_member`), more cheaply than
    tarfile's `tar` filter (a `realpath` per member, a third of a restore), which would
    also refuse the absolute links a virtualenv holds (`bin/python`); so tarfile's own
    filter is `fully_trusted`, and `check_member` is the whole policy."""
    reader = _Hashing(raw)
    seen: dict[str, bool] = {}
    with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
        for member in archive:
            check_member(member, seen)
            archive.extract(member, staging, numeric_owner=True, filter="fully_trusted")
    while reader.read(CHUNK):
        pass
    return reader.sha.hexdigest(), reader.size


def _check_archive(raw: IO[bytes]) -> tuple[str, int]:
    """What a restore would check, without unpacking: every member, and the SHA-256 and
    size of the whole."""
    reader = _Hashing(raw)
    seen: dict[str, bool] = {}
    with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
        for member in archive:
            check_member(member, seen)
    while reader.read(CHUNK):
        pass
    return reader.sha.hexdigest(), reader.size


class _HashingWriter:
    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)


def pack(venv: Path, target: Path) -> tuple[str, int]:
    """`venv`'s contents as a tar (links kept as links), hashed as it is written."""
    with target.open("wb") as raw:
        writer = _HashingWriter(raw)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.GNU_FORMAT) as archive:  # type: ignore[call-overload]
            for child in sorted(venv.iterdir()):
                archive.add(child, arcname=child.name)
        raw.flush()
        os.fsync(raw.fileno())
    return writer.sha.hexdigest(), writer.size


def mark_used(manifest: Path) -> None:
    """Record that an entry was used now: its manifest's mtime is its recency, set from the
    clock itself (a file's own times come from the kernel's coarse clock, a few
    milliseconds, so an entry used just after another was written could tie with it)."""
    now = time.time_ns()
    os.utime(manifest, ns=(now, now))


def _write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    with temp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temp.rename(path)
