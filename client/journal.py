"""The journal: publish a planned update, and finish one a killed process left half-done.

An update is recorded in the manifest (`pending`) before its first file moves and cleared
last, so whatever point a process dies at, the next command finds exactly what is left to
do and does it: deletions first (a file can become a folder), then one rename per file,
then the manifest. A file is never written through a folder that is a symlink or a file,
and that is asked afresh by every publish: what an earlier one saw may have changed since.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import Callable
from pathlib import Path

from client.index import first_on_the_way, on_disk
from client.manifest import FileRecord, Manifest, PendingUpdate
from providers.contract import FileMode
from providers.errors import UnsafeInput

Unchanged = Callable[[str, FileRecord], bool]
"""Whether a tracked file is still as meltano-forge recorded it (the index answers)."""


def publish(root: Path, manifest: Manifest, pending: PendingUpdate, unchanged: Unchanged) -> None:
    """Record the update, then move its files into place."""
    manifest.pending = pending
    manifest.save(root)
    finish(root, manifest, pending, unchanged)


def finish(root: Path, manifest: Manifest, pending: PendingUpdate, unchanged: Unchanged) -> None:
    """Publish (or finish publishing) a recorded update.

    A file this process staged moves with one rename and is recorded with the stat data
    taken when it was written; a file staged by a killed process (or merged, or restored)
    is checked on disk as before."""
    files = manifest.files
    staging = root / pending.staging
    for rel, record in pending.deletes.items():
        path = root / rel
        if os.path.lexists(path) and (record is None or unchanged(rel, record)):
            os.unlink(path)
            _prune(root, rel)
        files.pop(rel, None)
    base = str(root)
    source_root = str(staging)
    symlink = int(FileMode.SYMLINK)
    place = _Placer(base)
    for rel, write in pending.writes.items():
        source = f"{source_root}/{rel}"
        mode = write.mode
        if write.staged_mtime_ns and mode != symlink:
            try:
                place(rel, source, FileMode(mode))
            except FileNotFoundError:
                pass  # not staged after all: look at the disk below
            else:
                size = write.staged_size if write.content_sha == write.record_sha else -1
                files[rel] = FileRecord(write.record_sha, mode, size, write.staged_mtime_ns)
                continue
        elif os.path.lexists(source):
            place(rel, source, FileMode(mode))
        try:
            info = os.lstat(f"{base}/{rel}")
        except FileNotFoundError:  # removed by hand since: a local deletion
            files[rel] = FileRecord(write.record_sha, mode, -1, 0)
            continue
        size = info.st_size if write.content_sha == write.record_sha else -1
        files[rel] = FileRecord(write.record_sha, mode, size, info.st_mtime_ns)
    manifest.branch, manifest.base_sha, manifest.pending = pending.branch, pending.sha, None
    manifest.save(root)
    shutil.rmtree(staging, ignore_errors=True)


class _Placer:
    """Renames staged files into place, checking each folder's way once per publish."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.not_a_folder = on_disk(root)
        self.ready: set[str] = {""}

    def __call__(self, rel: str, source: str, mode: FileMode) -> None:
        folder = posixpath.dirname(rel)
        if folder not in self.ready:
            way = first_on_the_way(rel, self.not_a_folder)
            if way is not None:
                what = "symlink" if os.path.islink(f"{self.root}/{way}") else "file"
                msg = f"{rel} would be written through the {what} {way}"
                raise UnsafeInput(msg, f"Remove the {what}, or move it out of the way")
            os.makedirs(f"{self.root}/{folder}", exist_ok=True)
            self.ready.add(folder)
        target = f"{self.root}/{rel}"
        if mode is FileMode.SYMLINK:
            with open(source, "rb") as handle:
                link = handle.read().decode("utf-8", "surrogateescape")
            temporary = os.path.join(self.root, folder, f".{posixpath.basename(rel)}.mf-link")
            if os.path.lexists(temporary):
                os.unlink(temporary)
            os.symlink(link, temporary)
            os.replace(temporary, target)
            os.unlink(source)
            return
        os.chmod(source, 0o755 if mode is FileMode.EXECUTABLE else 0o644)
        os.replace(source, target)


def _prune(root: Path, rel: str) -> None:
    """Remove folders a deletion left empty (git does the same); never the root."""
    folder = posixpath.dirname(rel)
    while folder:
        try:
            os.rmdir(root / folder)
        except OSError:
            return
        folder = posixpath.dirname(folder)


__all__ = ["finish", "publish"]
