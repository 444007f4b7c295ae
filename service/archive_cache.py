"""Archives cached on disk by commit SHA, fetched once however many runners ask at once.

A commit never changes, so a cached tar.gz is valid forever; the cache is bounded by
size and evicts the least recently used. Concurrent requests for one SHA share a single
forge request (single-flight); the SHA is the ETag.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import threading
from pathlib import Path

from providers.contract import FileMode, Forge
from providers.names import is_sha
from service.metrics import ARCHIVES


class ArchiveCache:
    """`path_for(forge, project, sha)` returns a local tar.gz of the commit."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._inflight: dict[str, threading.Lock] = {}
        self.fetches = 0

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
