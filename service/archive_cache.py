"""Archives cached on disk by commit SHA, fetched once however many runners ask at once.

A commit never changes, so a cached tar.gz is valid forever; the cache is bounded by
size and evicts the least recently used. Concurrent requests for one SHA share a single
forge request (single-flight); the SHA is the ETag. Small archives are also kept in
memory with their stat data (bounded too), so a warm pull touches no disk: a runner
fleet pulling one SHA is served from memory, and the file's mtime (the disk LRU's clock)
is refreshed at most once a second.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from providers.contract import FileMode, Forge
from providers.names import is_sha
from service.metrics import ARCHIVES

HOT_MAX_BYTES = 64 * 1024**2
"""Archive bytes kept in memory at most (the most recently used)."""
HOT_MAX_ONE = 8 * 1024**2
"""Larger archives are always streamed from disk."""
TOUCH_EVERY = 1.0
"""Seconds between two refreshes of a hot archive's mtime."""


@dataclass
class Cached:
    """A cached archive: its file, that file's stat data and, when small, its bytes."""

    path: Path
    stat: os.stat_result
    data: bytes | None
    touched: float = 0.0


class ArchiveCache:
    """`path_for(forge, project, sha)` returns a local tar.gz of the commit; `hot` and
    `cached` give it with its stat data (and bytes) for serving."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._inflight: dict[str, threading.Lock] = {}
        self._hot: OrderedDict[str, Cached] = OrderedDict()
        self._hot_bytes = 0
        self.fetches = 0

    def hot(self, project: str, sha: str) -> Cached | None:
        """The archive from memory (a cache hit that touches no disk), or None."""
        key = f"{project}/{sha}"
        now = time.monotonic()
        with self._lock:
            found = self._hot.get(key)
            if found is None:
                return None
            self._hot.move_to_end(key)
            touch = now - found.touched > TOUCH_EVERY
            if touch:
                found.touched = now
        ARCHIVES.labels("hit").inc()
        if touch:  # evicted from disk meanwhile? memory still holds it
            with contextlib.suppress(OSError):
                os.utime(found.path)
        return found

    def cached(self, forge: Forge, project: str, sha: str) -> Cached:
        """The archive (fetched once when missing), remembered in memory when small."""
        path = self.path_for(forge, project, sha)
        info = path.stat()
        data = path.read_bytes() if info.st_size <= HOT_MAX_ONE else None
        entry = Cached(path, info, data, time.monotonic())
        if data is not None:
            key = f"{project}/{sha}"
            with self._lock:
                old = self._hot.pop(key, None)
                if old is not None and old.data is not None:
                    self._hot_bytes -= len(old.data)
                self._hot[key] = entry
                self._hot_bytes += len(data)
                while self._hot_bytes > HOT_MAX_BYTES and len(self._hot) > 1:
                    _, dropped = self._hot.popitem(last=False)
                    self._hot_bytes -= len(dropped.data or b"")
        return entry

    def _file(self, project: str, sha: str) -> Path:
        return self.root / project / f"{sha}.tar.gz"

    def path_for(self, forge: Forge, project: str, sha: str) -> Path:
        """The cached archive, fetching it (once) when missing."""
        if not is_sha(sha):
            msg = f"not a commit SHA: {sha!r}"
            raise ValueError(msg)
        target = self._file(project, sha)
        if target.exists():
            os.utime(target)
            ARCHIVES.labels("hit").inc()
            return target
        ARCHIVES.labels("miss").inc()
        key = f"{project}/{sha}"
        with self._lock:
            flight = self._inflight.setdefault(key, threading.Lock())
        with flight:
            if not target.exists():
                self._fetch(forge, sha, target)
        with self._lock:
            self._inflight.pop(key, None)
        self._evict(keep=target)
        return target

    def _fetch(self, forge: Forge, sha: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        try:
            with (
                os.fdopen(fd, "wb") as raw,
                tarfile.open(
                    fileobj=raw,
                    mode="w:gz",
                    format=tarfile.PAX_FORMAT,
                    pax_headers={"comment": sha},
                ) as tar,
            ):
                self.fetches += 1
                with forge.archive(sha) as snapshot:
                    top = f"{sha[:12]}/"
                    for entry in snapshot.entries:
                        info = tarfile.TarInfo(top + entry.path)
                        if entry.mode is FileMode.SYMLINK:
                            info.type = tarfile.SYMTYPE
                            info.linkname = entry.read().decode("utf-8", "surrogateescape")
                            info.mode = 0o777
                            tar.addfile(info)
                        else:
                            info.size = entry.size
                            info.mode = 0o755 if entry.mode is FileMode.EXECUTABLE else 0o644
                            tar.addfile(info, entry.stream)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _evict(self, keep: Path) -> None:
        files = sorted(self.root.rglob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for path in files:
            if total <= self.max_bytes:
                break
            if path != keep:
                total -= path.stat().st_size
                path.unlink(missing_ok=True)
                self._forget(path)

    def _forget(self, path: Path) -> None:
        """An archive left the disk: it leaves memory too (the cache stays bounded)."""
        key = str(path.relative_to(self.root)).removesuffix(".tar.gz")
        with self._lock:
            dropped = self._hot.pop(key, None)
            if dropped is not None:
                self._hot_bytes -= len(dropped.data or b"")
