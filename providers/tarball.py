"""Read a forge's tar.gz archive as a stream of checked `ArchiveEntry`s.

GitHub's tarball and GitLab's archive are both `git archive` output: a pax global header
whose `comment` is the commit SHA, then one top folder holding the tree. We read it in
stream mode (never seeking, never holding the whole archive) and refuse anything `git
archive` would never produce: absolute or `..` paths, links leaving the tree, hard links,
devices, or more bytes than the caps allow.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from providers.contract import ArchiveEntry, FileMode
from providers.errors import UnsafeInput
from providers.names import check_repo_path, is_sha


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps that stop a hostile or runaway archive."""

    max_total_bytes: int = 2 * 1024**3
    """Uncompressed bytes across all files."""
    max_file_bytes: int = 512 * 1024**2
    """Uncompressed bytes of any one file."""
    max_entries: int = 500_000
    """Number of files and folders."""


class ChunkReader(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks (an HTTP body)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        """This stream can be read."""
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill `b` from the next chunks; 0 at the end of the body."""
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def read_tarball(
    stream: io.RawIOBase | io.BufferedIOBase,
    *,
    expected_sha: str | None = None,
    limits: ArchiveLimits | None = None,
    folder: str = "",
) -> tuple[str, Iterator[ArchiveEntry]]:
    """Open a tar.gz stream; return the commit SHA and an iterator of its files.

    The SHA comes from the pax global header; `expected_sha` is used when the header has
    none, and must agree with it when both exist. Entries have the top folder stripped."""
    limits = limits or ArchiveLimits()
    try:
        tar = tarfile.open(fileobj=stream, mode="r|gz")  # noqa: SIM115 - closed by _entries
        first = tar.next()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        msg = "The archive could not be read (it is truncated or not a tar.gz)"
        raise UnsafeInput(msg) from exc
    sha = tar.pax_headers.get("comment", "") or ""
    if expected_sha and sha and sha != expected_sha:
        msg = f"The archive is of commit {sha}, not the requested {expected_sha}"
        raise UnsafeInput(msg)
    sha = sha or expected_sha or ""
    if not is_sha(sha):
        msg = "The archive does not say which commit it holds"
        raise UnsafeInput(msg)
    entries = _entries(tar, first, limits)
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    if prefix:
        entries = (e for e in entries if e.path.startswith(prefix))
    return sha, entries


def _entries(
    tar: tarfile.TarFile, first: tarfile.TarInfo | None, limits: ArchiveLimits
) -> Iterator[ArchiveEntry]:
    total = 0
    count = 0
    top: str | None = None
    member = first
    with tar:
        while member is not None:
            count += 1
            if count > limits.max_entries:
                msg = f"The archive has more than {limits.max_entries} entries"
                raise UnsafeInput(msg)
            name = member.name
            if name.startswith("/") or "\\" in name:
                msg = f"The archive holds an absolute or odd path: {name!r}"
                raise UnsafeInput(msg)
            head, _, rest = name.rstrip("/").partition("/")
            top = top or head
            if head != top:
                msg = f"The archive has more than one top folder: {name!r}"
                raise UnsafeInput(msg)
            if rest and not member.isdir():
                entry = _entry(tar, member, rest, limits)
                total += len(entry.data)
                if total > limits.max_total_bytes:
                    msg = f"The archive unpacks to more than {limits.max_total_bytes} bytes"
                    raise UnsafeInput(msg)
                yield entry
            elif rest:
                check_repo_path(rest)
            member = _next(tar)


def _next(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    try:
        return tar.next()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        msg = "The archive is truncated or corrupt"
        raise UnsafeInput(msg) from exc


def _entry(
    tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, limits: ArchiveLimits
) -> ArchiveEntry:
    check_repo_path(path)
    if member.issym():
        target = member.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            msg = f"The symlink {path} points outside the project: {target!r}"
            raise UnsafeInput(msg)
        return ArchiveEntry(path, FileMode.SYMLINK, target.encode())
    if member.islnk():
        msg = f"The archive holds a hard link ({path}); git archives never do"
        raise UnsafeInput(msg)
    if not member.isreg():
        msg = f"The archive holds a device, FIFO or other special file: {path}"
        raise UnsafeInput(msg)
    if member.size > limits.max_file_bytes:
        msg = f"{path} is larger than {limits.max_file_bytes} bytes"
        raise UnsafeInput(msg)
    handle = tar.extractfile(member)
    if handle is None:  # pragma: no cover - regular files always have a handle
        msg = f"{path} has no data"
        raise UnsafeInput(msg)
    try:
        data = handle.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        msg = f"The archive is truncated inside {path}"
        raise UnsafeInput(msg) from exc
    if len(data) != member.size:
        msg = f"The archive is truncated inside {path}"
        raise UnsafeInput(msg)
    mode = FileMode.EXECUTABLE if member.mode & 0o111 else FileMode.REGULAR
    return ArchiveEntry(path, mode, data)
