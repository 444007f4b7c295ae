"""Read a forge's tar.gz archive as a stream of checked `ArchiveEntry`s.

GitHub's tarball and GitLab's archive are both `git archive` output: a pax global header
whose `comment` is the commit SHA, then one top folder holding the tree. We read it as a
stream (never seeking, never holding the whole archive, nor any large file: a large
entry's bytes are a window on the download) and refuse anything `git archive` would never
produce: absolute or `..` paths, hard links, devices, or more bytes than the caps allow.
Sizes are checked from each member's header before a byte of it is read, so a gzip bomb
is refused after its first header, not after it filled the disk; the gzip stream must end
with its checksum, so a download cut short is refused wherever it was cut. Whether links
stay inside the tree is a property of the whole tree (`providers.safety.check_links`),
checked by the consumer once it has seen every entry.

Download, decompression and header parsing run on a reader thread, a bounded number of
bytes ahead of the consumer, which meanwhile hashes and writes: the two overlap (zlib,
sockets, hashing and file writes release the GIL). Small members travel whole, in
batches; a large one follows its entry as a run of chunks that its `stream` reads.
"""

from __future__ import annotations

import collections
import io
import posixpath
import re
import sys
import threading
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, cast

from providers.contract import ArchiveEntry, FileMode
from providers.errors import UnsafeInput
from providers.names import check_repo_path, is_sha
from providers.safety import Limits

BLOCK = 512
INPUT_CHUNK = 64 * 1024
"""Compressed bytes read from the stream at a time (when it is not a `ChunkReader`)."""
INFLATE_STEP = 1 << 20
"""Most bytes one decompression call may produce: a bomb inflates a step at a time."""
INLINE_MAX = 1 << 20
"""Members up to this size travel whole; larger ones as chunks of this size."""
BATCH = 512
"""Small entries handed over together (one lock round trip for many files)."""
AHEAD_BYTES = 8 << 20
"""Most decompressed bytes the reader thread keeps ready ahead of the consumer."""

_ENCODING = sys.getfilesystemencoding()
_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")
_REGULAR = frozenset((b"0", b"\0", b"7"))  # tarfile's REGULAR_TYPES, GNU sparse aside
_SPECIAL = frozenset((b"1", b"2", b"3", b"4", b"5", b"6"))  # data never follows these
_GNU_LONG = frozenset((b"L", b"K"))
_GNU_TYPES = frozenset((b"L", b"K", b"S"))
_ZERO_BLOCK = bytes(BLOCK)


class ChunkReader(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks (an HTTP body)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        """This stream can be read."""
        return True

    def chunk(self) -> bytes:
        """The next chunk as it came (no copy); b'' at the end of the body."""
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        for data in self._chunks:
            if data:
                return data
        return b""

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


class _Corrupt(Exception):
    """The archive broke the tar or gzip format (mapped to `UnsafeInput` by the caller)."""


class _Inflater:
    """The decompressed bytes of a gzip stream, read forward, a bounded step at a time."""

    def __init__(self, stream: io.RawIOBase | io.BufferedIOBase) -> None:
        self._chunk = stream.chunk if isinstance(stream, ChunkReader) else None
        self._stream = stream
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip, with its CRC checked
        self._buffer = bytearray()
        self._pos = 0
        self.produced = False

    def _input(self) -> bytes:
        if self._chunk is not None:
            return self._chunk()
        data = self._stream.read(INPUT_CHUNK)
        return data if data else b""

    def _more(self) -> bool:
        """Decompress another step; False once the gzip stream has ended."""
        z = self._zlib
        while True:
            if z.eof:
                return False
            data = z.unconsumed_tail or self._input()
            if not data:
                msg = "the download ended before the archive did"
                raise _Corrupt(msg)
            try:
                out = z.decompress(data, INFLATE_STEP)
            except zlib.error as exc:
                raise _Corrupt(str(exc)) from exc
            if out:
                self.produced = True
                if self._pos:
                    del self._buffer[: self._pos]
                    self._pos = 0
                self._buffer += out
                return True

    def read(self, n: int) -> bytes:
        """Exactly `n` bytes, or `_Corrupt` when the stream ends first."""
        while len(self._buffer) - self._pos < n:
            if not self._more():
                msg = "the archive ends too early"
                raise _Corrupt(msg)
        start = self._pos
        self._pos = start + n
        return bytes(self._buffer[start : start + n])

    def read_some(self, n: int) -> bytes:
        """Between 1 and `n` bytes (what is ready, else the next step)."""
        if len(self._buffer) == self._pos and not self._more():
            msg = "the archive ends too early"
            raise _Corrupt(msg)
        start = self._pos
        end = min(start + n, len(self._buffer))
        self._pos = end
        return bytes(self._buffer[start:end])

    def skip(self, n: int) -> None:
        """Pass over `n` bytes."""
        while n > 0:
            ready = len(self._buffer) - self._pos
            if ready == 0:
                if not self._more():
                    msg = "the archive ends too early"
                    raise _Corrupt(msg)
                continue
            step = min(ready, n)
            self._pos += step
            n -= step

    def finish(self) -> None:
        """Read to the end of the gzip stream (the tar's zero padding), so its checksum
        is verified: a download cut at a member boundary is refused too."""
        while self._more():
            self._pos = len(self._buffer)


def _nts(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode(_ENCODING, "surrogateescape")


def _nti(field: bytes) -> int:
    """A tar number: octal text, or GNU base-256 (0o200 / 0o377 first byte)."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:
            value -= 256 ** (len(field) - 1)
        return value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        msg = "invalid number in a header"
        raise _Corrupt(msg) from None


def _checksum_ok(header: bytes) -> bool:
    wanted = _nti(header[148:156])
    unsigned = sum(header) - sum(header[148:156]) + 256
    if wanted == unsigned:
        return True
    signed = sum(b - 256 if b > 127 else b for b in header[:148] + header[156:]) + 256
    return wanted == signed


def _pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while True:
        match = _PAX_RECORD.match(data, pos)
        if not match:
            return records
        length = int(match.group(1))
        if length == 0:
            msg = "invalid pax header"
            raise _Corrupt(msg)
        value = data[match.end(2) + 1 : match.start(1) + length - 1]
        key = match.group(2).decode("utf-8", "surrogateescape")
        records[key] = value.decode("utf-8", "surrogateescape")
        pos += length


class _Member:
    """One parsed header: what `tarfile.TarInfo` would say about it."""

    __slots__ = ("linkname", "mode", "name", "size", "type")

    def __init__(self, name: str, mode: int, size: int, kind: bytes, linkname: str) -> None:
        self.name, self.mode, self.size, self.type, self.linkname = (
            name,
            mode,
            size,
            kind,
            linkname,
        )


class _Headers:
    """Tar headers off an `_Inflater`, with pax and GNU long names applied as tarfile
    applies them; `comment` is the global pax header's."""

    def __init__(self, inflater: _Inflater) -> None:
        self.inflater = inflater
        self.globals: dict[str, str] = {}

    def next(self) -> _Member | None:
        """The next member, or None at the end of the archive."""
        inflater = self.inflater
        local: dict[str, str] = {}
        long_name: str | None = None
        long_link: str | None = None
        while True:
            try:
                header = inflater.read(BLOCK)
            except _Corrupt:
                if not inflater.produced:
                    raise
                msg = "the archive ends inside a header"
                raise _Corrupt(msg) from None
            if header == _ZERO_BLOCK:
                return None
            if not _checksum_ok(header):
                msg = "bad header checksum"
                raise _Corrupt(msg)
            kind = header[156:157]
            size = _nti(header[124:136])
            if size < 0:
                msg = "negative size"
                raise _Corrupt(msg)
            if kind in (b"x", b"g", b"X"):
                records = _pax(inflater.read(_padded(size))[:size])
                if kind == b"g":
                    self.globals.update(records)
                else:
                    local.update(records)
                continue
            if kind in _GNU_LONG:
                text = _nts(inflater.read(_padded(size))[:size])
                if kind == b"L":
                    long_name = text
                else:
                    long_link = text
                continue
            return self._member(header, kind, size, local, long_name, long_link)

    def _member(
        self,
        header: bytes,
        kind: bytes,
        size: int,
        local: dict[str, str],
        long_name: str | None,
        long_link: str | None,
    ) -> _Member:
        name = _nts(header[0:100])
        linkname = _nts(header[157:257])
        prefix = _nts(header[345:500])
        if kind == b"\0" and name.endswith("/"):
            kind = b"5"
        if kind == b"5":
            name = name.rstrip("/")
        if prefix and kind not in _GNU_TYPES:
            name = prefix + "/" + name
        if long_name is not None:
            name = long_name
        if long_link is not None:
            linkname = long_link
        pax = {**self.globals, **local} if self.globals or local else None
        if pax:
            name = pax.get("path", name)
            linkname = pax.get("linkpath", linkname)
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    msg = "invalid pax size"
                    raise _Corrupt(msg) from None
            if kind == b"5":
                name = name.rstrip("/")
        return _Member(name, _nti(header[100:108]), size, kind, linkname)

    def skip_data(self, member: _Member) -> None:
        """Pass over a member's data (tarfile skips it for files and unknown types)."""
        if member.type not in _SPECIAL:
            self.inflater.skip(_padded(member.size))


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


_END = object()


class _Closed(Exception):
    """The consumer has gone: the reader thread stops."""


class _Pipe:
    """Items from the reader thread to the consumer, at most `AHEAD_BYTES` ahead."""

    def __init__(self) -> None:
        self._items: collections.deque[tuple[object, int]] = collections.deque()
        self._bytes = 0
        self._ready = threading.Condition(threading.Lock())
        self.closed = False

    def put(self, item: object, size: int = 0) -> None:
        with self._ready:
            while self._items and self._bytes + size > AHEAD_BYTES and not self.closed:
                self._ready.wait()
            if self.closed:
                raise _Closed
            self._items.append((item, size))
            self._bytes += size
            self._ready.notify_all()

    def get(self) -> object:
        with self._ready:
            while not self._items:
                self._ready.wait()
            item, size = self._items.popleft()
            self._bytes -= size
            self._ready.notify_all()
            return item

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._items.clear()
            self._ready.notify_all()


class _LargeStream(io.RawIOBase):
    """A large member's bytes, as the reader thread hands them over."""

    def __init__(self, pipe: _Pipe, size: int) -> None:
        self._pipe = pipe
        self._left = size
        self._chunk = b""

    def readable(self) -> bool:
        """This stream can be read."""
        return True

    def _next(self) -> bytes:
        item = self._pipe.get()
        if isinstance(item, BaseException):
            self._left = 0
            raise item
        assert isinstance(item, bytes)  # noqa: S101 - the pipe's protocol
        return item

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all that is left when negative or None)."""
        if size is None or size < 0:
            parts = []
            while chunk := self.read(INLINE_MAX):
                parts.append(chunk)
            return b"".join(parts)
        if self._left <= 0 or size == 0:
            return b""
        if not self._chunk:
            self._chunk = self._next()
        data = self._chunk[:size]
        self._chunk = self._chunk[len(data) :]
        self._left -= len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill `b` with the member's next bytes."""
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Pass over what the consumer did not read (the pipe must move on)."""
        while self._left > 0:
            if not self.read(INLINE_MAX):
                return


_UNREADABLE = (_Corrupt, EOFError, OSError, ValueError)
"""How a read of the stream fails: cut short, a corrupt gzip, or no tar.gz at all."""


def _unreadable(exc: BaseException, inflater: _Inflater, inside: str = "") -> UnsafeInput:
    """The one wording of a stream that ended badly, naming the file it was cut inside.
    (A function each `except` calls rather than a context manager: it guards every
    member's read, where a `with` would cost a tenth of the reader's time.)"""
    if inside:
        return UnsafeInput(f"The archive is truncated inside {inside}")
    if isinstance(exc, _Corrupt) and not inflater.produced:
        return UnsafeInput("The archive could not be read (it is truncated or not a tar.gz)")
    return UnsafeInput("The archive is truncated or corrupt")


class _Reader:
    """The reader thread: download, gunzip, parse and check, `AHEAD_BYTES` ahead."""

    def __init__(self, stream: io.RawIOBase | io.BufferedIOBase, limits: Limits) -> None:
        self.limits = limits
        self.pipe = _Pipe()
        self.headers = _Headers(_Inflater(stream))
        self.thread = threading.Thread(target=self._run, name="archive-reader", daemon=True)

    def _run(self) -> None:
        try:
            self._parse()
        except _Closed:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            try:
                self.pipe.put(exc)
            except _Closed:
                return

    def _parse(self) -> None:
        headers, limits, pipe = self.headers, self.limits, self.pipe
        member = self._next_header()
        pipe.put(("head", headers.globals.get("comment", "") or ""))
        batch: list[ArchiveEntry] = []
        batch_bytes = 0
        total = count = 0
        top: str | None = None
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
            if rest and member.type != b"5":
                large = self._check(member, rest)
                total += member.size
                if total > limits.max_total_bytes:
                    msg = f"The archive unpacks to more than {limits.max_total_bytes:,} bytes"
                    raise UnsafeInput(msg)
                if large:
                    if batch:
                        pipe.put(batch, batch_bytes)
                        batch, batch_bytes = [], 0
                    self._send_large(member, rest)
                else:
                    batch.append(self._small(member, rest))
                    batch_bytes += member.size + 200
                    if len(batch) >= BATCH or batch_bytes >= INLINE_MAX:
                        pipe.put(batch, batch_bytes)
                        batch, batch_bytes = [], 0
            else:
                if rest:
                    check_repo_path(rest)
                headers.skip_data(member)
            member = self._next_header()
        self._finish()
        if batch:
            pipe.put(batch, batch_bytes)
        pipe.put(_END)

    def _next_header(self) -> _Member | None:
        try:
            return self.headers.next()
        except _UNREADABLE as exc:
            raise _unreadable(exc, self.headers.inflater) from exc

    def _finish(self) -> None:
        try:
            self.headers.inflater.finish()
        except _UNREADABLE as exc:
            raise _unreadable(exc, self.headers.inflater) from exc

    def _check(self, member: _Member, path: str) -> bool:
        """Refuse what git archives never hold; True for a large regular file."""
        check_repo_path(path)
        if member.type == b"2":
            # Whether a link stays inside the tree depends on the tree's other links too
            # (providers.safety.check_links); one link's own text is checked here, early.
            target = member.linkname
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                msg = f"The symlink {path} points outside the project: {target!r}"
                raise UnsafeInput(msg)
            member.size = len(target.encode("utf-8", "surrogateescape"))
            return False
        if member.type == b"1":
            msg = f"The archive holds a hard link ({path}); git archives never do"
            raise UnsafeInput(msg)
        if member.type not in _REGULAR:
            msg = f"The archive holds a device, FIFO or other special file: {path}"
            raise UnsafeInput(msg)
        if member.size > self.limits.max_file_bytes:
            msg = (
                f"{path} is {member.size:,} bytes, over the limit of {self.limits.max_file_bytes:,}"
            )
            raise UnsafeInput(msg)
        return member.size > INLINE_MAX

    def _data(self, path: str, n: int, some: bool = False) -> bytes:
        inflater = self.headers.inflater
        try:
            return inflater.read_some(n) if some else inflater.read(n)
        except _UNREADABLE as exc:
            raise _unreadable(exc, inflater, path) from exc

    def _small(self, member: _Member, path: str) -> ArchiveEntry:
        if member.type == b"2":
            data = member.linkname.encode("utf-8", "surrogateescape")
            return ArchiveEntry(path, FileMode.SYMLINK, len(data), io.BytesIO(data))
        data = self._data(path, member.size) if member.size else b""
        self._skip_padding(path, member.size)
        mode = FileMode.EXECUTABLE if member.mode & 0o111 else FileMode.REGULAR
        return ArchiveEntry(path, mode, member.size, io.BytesIO(data))

    def _skip_padding(self, path: str, size: int) -> None:
        pad = _padded(size) - size
        if pad:
            try:
                self.headers.inflater.skip(pad)
            except _UNREADABLE as exc:
                raise _unreadable(exc, self.headers.inflater, path) from exc

    def _send_large(self, member: _Member, path: str) -> None:
        mode = FileMode.EXECUTABLE if member.mode & 0o111 else FileMode.REGULAR
        stream = _LargeStream(self.pipe, member.size)
        self.pipe.put([ArchiveEntry(path, mode, member.size, cast(BinaryIO, stream))], 200)
        left = member.size
        while left > 0:
            data = self._data(path, min(left, INLINE_MAX), some=True)
            left -= len(data)
            self.pipe.put(data, len(data))
        self._skip_padding(path, member.size)


@contextmanager
def open_tarball(
    stream: io.RawIOBase | io.BufferedIOBase,
    *,
    expected_sha: str | None = None,
    limits: Limits | None = None,
    folder: str = "",
) -> Iterator[tuple[str, Iterator[ArchiveEntry]]]:
    """Open a tar.gz stream; give the commit SHA and an iterator of its files, and stop
    reading on leaving, whether or not every entry was read.

    The SHA comes from the pax global header; `expected_sha` is used when the header has
    none, and must agree with it when both exist. Entries have the top folder stripped."""
    reader = _Reader(stream, limits or Limits())
    reader.thread.start()
    try:
        first = reader.pipe.get()
        if isinstance(first, BaseException):
            raise first
        assert isinstance(first, tuple)  # noqa: S101 - the pipe's protocol
        sha = str(first[1])
        if expected_sha and sha and sha != expected_sha:
            msg = f"The archive is of commit {sha}, not the requested {expected_sha}"
            raise UnsafeInput(msg)
        sha = sha or expected_sha or ""
        if not is_sha(sha):
            msg = "The archive does not say which commit it holds"
            raise UnsafeInput(msg)
        entries = _entries(reader.pipe)
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        if prefix:
            entries = (e for e in entries if e.path.startswith(prefix))
        yield sha, entries
    finally:
        reader.pipe.close()
        reader.thread.join(timeout=10)


def _entries(pipe: _Pipe) -> Iterator[ArchiveEntry]:
    large: _LargeStream | None = None
    while True:
        if large is not None:
            large.drain()
            large = None
        item = pipe.get()
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, list)  # noqa: S101 - the pipe's protocol
        for entry in item:
            if isinstance(entry.stream, _LargeStream):
                large = entry.stream
            yield entry
