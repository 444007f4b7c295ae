"""Download a snapshot into a staging folder inside the workspace, checked and hashed.

Each archive member streams to its own staging file while its blob SHA is computed, under
the size caps, so memory stays flat whatever the archive holds. Files the workspace
already has at the same blob are not written at all. Nothing here touches the project's
files: the whole tree (its links included) is checked before anything is published.

Each staged file's size and modification time are taken from its open descriptor once it
is written (a rename into place keeps both), so publishing needs no further stat.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from client.manifest import STAGING_DIR, STATE_DIR
from client.progress import Progress
from providers.blobs import blob_header
from providers.blobs import blob_sha as blob_sha  # the workspace and patches hash with it
from providers.contract import ArchiveEntry, FileMode
from providers.errors import UnsafeInput
from providers.safety import Limits, check_links, check_path, check_size

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StagedFile:
    """One file of the snapshot."""

    sha: str
    """Its blob SHA."""
    mode: FileMode
    """Its mode."""
    size: int
    """Its size (a link's target length)."""
    staged: str | None
    """Path of its staged copy (relative to the staging folder), or None when the
    workspace did not need it."""
    mtime_ns: int = 0
    """Modification time of the staged copy as written (0 when not staged)."""


@dataclass
class Staged:
    """A snapshot in staging: every file's SHA and mode, and the copies that were needed."""

    sha: str
    folder: Path
    files: dict[str, StagedFile] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        """Remove the staging folder, and the state folders it needed if now empty."""
        shutil.rmtree(self.folder, ignore_errors=True)
        for parent in (self.folder.parent, self.folder.parent.parent):
            try:
                parent.rmdir()
            except OSError:
                return


def staging_folder(root: Path) -> Path:
    """A new, empty staging folder inside the workspace (same filesystem: renames work)."""
    parent = root / STATE_DIR / STAGING_DIR
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix="update-"))


def clear_stale(root: Path, keep: str | None = None) -> None:
    """Remove staging folders a killed process left behind (except `keep`)."""
    parent = root / STATE_DIR / STAGING_DIR
    if not parent.is_dir():
        return
    for child in parent.iterdir():
        if keep is None or child != root / keep:
            shutil.rmtree(child, ignore_errors=True)


def stage(
    root: Path,
    sha: str,
    entries: Iterable[ArchiveEntry],
    *,
    prefix: str,
    limits: Limits,
    wanted: Callable[[str, str, FileMode], bool],
    progress: Progress | None = None,
) -> Staged:
    """Stream `entries` (repository paths under `prefix`) into a staging folder.

    `wanted(rel, sha, mode)` says whether the workspace needs a file's bytes; small files
    are hashed in memory first and written only if wanted, large ones are streamed to disk
    and dropped if not. On any error the staging folder is removed."""
    staged = Staged(sha, staging_folder(root))
    try:
        _stage_all(staged, entries, prefix, limits, wanted, progress)
        _check_tree(staged)
    except BaseException:
        staged.discard()
        raise
    return staged


def _stage_all(
    staged: Staged,
    entries: Iterable[ArchiveEntry],
    prefix: str,
    limits: Limits,
    wanted: Callable[[str, str, FileMode], bool],
    progress: Progress | None,
) -> None:
    total = 0
    folders: set[str] = set()
    files = staged.files
    folder = str(staged.folder)
    cut = len(prefix)
    max_total = limits.max_total_bytes
    sha1 = hashlib.sha1
    symlink = FileMode.SYMLINK
    for entry in entries:
        path = entry.path
        if not path.startswith(prefix):
            continue
        rel = check_path(path[cut:])
        if rel in files:
            msg = f"The snapshot holds {path} twice"
            raise UnsafeInput(msg)
        size = entry.size
        check_size(path, size, limits)
        total += size
        if total > max_total:
            msg = f"The snapshot unpacks to more than {max_total:,} bytes"
            raise UnsafeInput(msg)
        mode = entry.mode
        if mode is symlink or size <= CHUNK:
            data = entry.read()
            if mode is symlink:
                staged.links[rel] = data.decode("utf-8", "surrogateescape")
            elif len(data) != size:
                msg = f"The snapshot is truncated inside {path}"
                raise UnsafeInput(msg)
            digest = sha1(blob_header(len(data)), usedforsecurity=False)
            digest.update(data)
            sha = digest.hexdigest()
            if wanted(rel, sha, mode):
                mtime_ns = _write(folder, rel, data, folders)
                files[rel] = StagedFile(sha, mode, len(data), rel, mtime_ns or 0)
            else:
                files[rel] = StagedFile(sha, mode, len(data), None)
        else:
            _stream(staged, rel, entry, wanted, folders)
        if progress is not None:
            progress.advance(size)


def _write(folder: str | Path, rel: str, data: bytes, folders: set[str]) -> int:
    """Write a staged file; its modification time (from the open descriptor)."""
    parent = posixpath.dirname(rel)
    if parent not in folders:
        os.makedirs(os.path.join(folder, parent), exist_ok=True)
        folders.add(parent)
    fd = os.open(f"{folder}/{rel}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if data:
            written = os.write(fd, data)
            if written < len(data):
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(fd, view) :]
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)


def _stream(
    staged: Staged,
    rel: str,
    entry: ArchiveEntry,
    wanted: Callable[[str, str, FileMode], bool],
    folders: set[str],
) -> None:
    """A large file: straight to disk while hashing, never whole in memory."""
    parent = posixpath.dirname(rel)
    if parent not in folders:
        os.makedirs(staged.folder / parent, exist_ok=True)
        folders.add(parent)
    digest = hashlib.sha1(blob_header(entry.size), usedforsecurity=False)
    written = 0
    with open(staged.folder / rel, "xb") as handle:
        while chunk := entry.stream.read(CHUNK):
            written += len(chunk)
            if written > entry.size:
                break
            digest.update(chunk)
            handle.write(chunk)
        handle.flush()
        mtime_ns = os.fstat(handle.fileno()).st_mtime_ns
    if written != entry.size:
        msg = f"The snapshot is truncated inside {entry.path}"
        raise UnsafeInput(msg)
    sha = digest.hexdigest()
    keep = wanted(rel, sha, entry.mode)
    if not keep:
        os.unlink(staged.folder / rel)
    staged.files[rel] = StagedFile(
        sha, entry.mode, entry.size, rel if keep else None, mtime_ns if keep else 0
    )


def _check_tree(staged: Staged) -> None:
    """No file under a link, and every link inside the tree after following the others."""
    if staged.links:
        for rel in staged.files:
            parts = rel.split("/")
            for i in range(1, len(parts)):
                ancestor = "/".join(parts[:i])
                if ancestor in staged.links:
                    msg = f"The snapshot puts {rel} under the symlink {ancestor}"
                    raise UnsafeInput(msg)
        check_links(staged.links)
