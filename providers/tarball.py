"""Read a forge's tar.gz archive as a stream of checked `ArchiveEntry`s.

GitHub's tarball and GitLab's archive are both `git archive` output: a pax global header
whose `comment` is the commit SHA, then one top folder holding the tree. We read it in
stream mode (never seeking, never holding the whole archive, nor any whole file: each
entry's bytes are a window on the download) and refuse anything `git archive` would never
produce: absolute or `..` paths, hard links, devices, or more bytes than the caps allow.
Sizes are checked from each member's header before a byte of it is read, so a gzip bomb
is refused after its first header, not after it filled the disk. Whether links stay inside
the tree is a property of the whole tree (`providers.safety.check_links`), checked by the
consumer once it has seen every entry.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO

from providers.contract import ArchiveEntry, FileMode
from providers.errors import UnsafeInput
from providers.names import check_repo_path, is_sha
from providers.safety import Limits


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


@contextmanager
def open_tarball(
    stream: io.RawIOBase | io.BufferedIOBase,
    *,
    expected_sha: str | None = None,
    limits: Limits | None = None,
    folder: str = "",
) -> Iterator[tuple[str, Iterator[ArchiveEntry]]]:
    """Open a tar.gz stream; give the commit SHA and an iterator of its files, and close
    the archive on leaving, whether or not every entry was read.

    The SHA comes from the pax global header; `expected_sha` is used when the header has
    none, and must agree with it when both exist. Entries have the top folder stripped."""
    limits = limits or Limits()
    try:
        tar = tarfile.open(fileobj=stream, mode="r|gz")  # noqa: SIM115 - closed just below
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        msg = "The archive could not be read (it is truncated or not a tar.gz)"
        raise UnsafeInput(msg) from exc
    with tar:
        first = _next(tar)
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
        yield sha, entries


def _entries(
    tar: tarfile.TarFile, first: tarfile.TarInfo | None, limits: Limits
) -> Iterator[ArchiveEntry]:
    total = 0
    count = 0
    top: str | None = None
    member = first
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
            total += entry.size
            if total > limits.max_total_bytes:
                msg = f"The archive unpacks to more than {limits.max_total_bytes:,} bytes"
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
    tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, limits: Limits
) -> ArchiveEntry:
    check_repo_path(path)
    if member.issym():
        # Whether a link stays inside the tree depends on the tree's other links too
        # (providers.safety.check_links); one link's own text is checked here, early.
        target = member.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            msg = f"The symlink {path} points outside the project: {target!r}"
            raise UnsafeInput(msg)
        data = target.encode("utf-8", "surrogateescape")
        return ArchiveEntry(path, FileMode.SYMLINK, len(data), io.BytesIO(data))
    if member.islnk():
        msg = f"The archive holds a hard link ({path}); git archives never do"
        raise UnsafeInput(msg)
    if not member.isreg():
        msg = f"The archive holds a device, FIFO or other special file: {path}"
        raise UnsafeInput(msg)
    if member.size > limits.max_file_bytes:
        msg = f"{path} is {member.size:,} bytes, over the limit of {limits.max_file_bytes:,}"
        raise UnsafeInput(msg)
    handle = tar.extractfile(member)
    if handle is None:  # pragma: no cover - regular files always have a handle
        msg = f"{path} has no data"
        raise UnsafeInput(msg)
    mode = FileMode.EXECUTABLE if member.mode & 0o111 else FileMode.REGULAR
    return ArchiveEntry(
        path, mode, member.size, io.BufferedReader(_Member(handle, path, member.size), 1 << 16)
    )


class _Member(io.RawIOBase):
    """One member's bytes, read straight from the decompressing stream; a short read (a
    truncated download) is an `UnsafeInput`, never a silently short file."""

    def __init__(self, handle: IO[bytes], path: str, size: int) -> None:
        self._handle, self._path, self._left = handle, path, size

    def readable(self) -> bool:
        """This stream can be read."""
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill `b` with the member's next bytes."""
        if self._left <= 0:
            return 0
        want = min(len(b), self._left)
        try:
            data = self._handle.read(want)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            msg = f"The archive is truncated inside {self._path}"
            raise UnsafeInput(msg) from exc
        if not data:
            msg = f"The archive is truncated inside {self._path}"
            raise UnsafeInput(msg)
        b[: len(data)] = data
        self._left -= len(data)
        return len(data)
