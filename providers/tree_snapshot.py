"""A commit's snapshot read file by file: its tree listing, then one request per blob.

When a forge's archive cannot be had in time (gitlab.com allows 5 archive downloads a
minute per user), the same `Snapshot` is built from the API's tree listing and its raw
blobs. The result is what the archive would have held: the same paths, the same bytes
and the same modes (regular, executable, symlink, as the tree records them); folders and
submodules are no files, in an archive either.

Blobs are fetched on a bounded pool of threads, a bounded number ahead of the consumer,
and handed on in listing order. Each is checked against the id the tree gave it
(`blob_sha`) before anything reads it: bytes that do not hash to their id are refused like
a corrupt archive. A blob held by several paths is fetched once; the empty blob never.
Small blobs stay in memory, large ones spill to a temporary file, so a worker holds at
most one file's bytes.
"""

from __future__ import annotations

import collections
import hashlib
import io
import posixpath
import tempfile
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, BinaryIO, cast

from providers.blobs import blob_header
from providers.contract import ArchiveEntry, FileMode, TreeEntry
from providers.errors import UnsafeInput
from providers.names import check_repo_path
from providers.safety import Limits

EMPTY_BLOB = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
"""The id of the empty blob (`git hash-object /dev/null`): nothing to fetch."""
IN_MEMORY = 1 << 20
"""Blobs up to this size stay in memory; larger ones spill to a temporary file."""

Fetch = Callable[[str, str], IO[bytes]]
"""`fetch(blob_sha, path)`: the blob's bytes, checked (see `spool`)."""


def spool(chunks: Iterable[bytes], sha: str, path: str, limits: Limits) -> IO[bytes]:
    """A blob's bytes off a download, checked: at most `limits.max_file_bytes`, and
    hashing to `sha`. Returned at offset 0; the caller closes it."""
    out = cast("IO[bytes]", tempfile.SpooledTemporaryFile(max_size=IN_MEMORY))  # noqa: SIM115
    try:
        _verify(out, _copy(chunks, out, path, limits), sha, path)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def _copy(chunks: Iterable[bytes], out: IO[bytes], path: str, limits: Limits) -> int:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limits.max_file_bytes:
            msg = f"{path} is over the limit of {limits.max_file_bytes:,} bytes"
            raise UnsafeInput(msg)
        out.write(chunk)
    return size


def _verify(data: IO[bytes], size: int, sha: str, path: str) -> None:
    data.seek(0)
    digest = hashlib.sha1(blob_header(size), usedforsecurity=False)
    while block := data.read(IN_MEMORY):
        digest.update(block)
    if digest.hexdigest() != sha:
        msg = f"The bytes of {path} do not match its id in the tree ({sha})"
        raise UnsafeInput(msg, "Try again; if it persists, the forge is serving corrupt data")


def blob_entries(
    listed: Sequence[TreeEntry], fetch: Fetch, *, limits: Limits, workers: int
) -> Generator[ArchiveEntry]:
    """The files of `listed` with their bytes, in listing order, fetched `workers` at a
    time and at most twice `workers` distinct blobs ahead of the consumer."""
    if len(listed) > limits.max_entries:
        msg = f"The tree has more than {limits.max_entries} entries"
        raise UnsafeInput(msg)
    for entry in listed:
        check_repo_path(entry.path)
    uses = collections.Counter(e.sha for e in listed)
    ahead = 2 * workers
    futures: dict[str, Future[IO[bytes]]] = {}
    done: list[IO[bytes]] = []
    total = 0
    pool = ThreadPoolExecutor(workers, thread_name_prefix="blob-fetch")
    try:
        upcoming = 0
        for index, entry in enumerate(listed):
            for finished in done:  # read by the consumer before it asked for this one
                finished.close()
            done.clear()
            _submit(pool, futures, fetch, entry)
            upcoming = max(upcoming, index + 1)
            while upcoming < len(listed) and len(futures) < ahead:
                _submit(pool, futures, fetch, listed[upcoming])
                upcoming += 1
            if entry.sha == EMPTY_BLOB:
                data: IO[bytes] = io.BytesIO()
                size = 0
            else:
                data = futures[entry.sha].result()
                data.seek(0, io.SEEK_END)
                size = data.tell()
                data.seek(0)
                uses[entry.sha] -= 1
                if uses[entry.sha] == 0:
                    done.append(futures.pop(entry.sha).result())
            total += size
            if total > limits.max_total_bytes:
                msg = f"The tree unpacks to more than {limits.max_total_bytes:,} bytes"
                raise UnsafeInput(msg)
            if entry.mode is FileMode.SYMLINK:
                _check_link(entry.path, data.read())
                data.seek(0)
            yield ArchiveEntry(entry.path, entry.mode, size, cast("BinaryIO", data))
    finally:
        for finished in done:
            finished.close()
        for future in futures.values():
            if not future.cancel() and future.exception() is None:
                future.result().close()
        pool.shutdown(wait=True, cancel_futures=True)


def _submit(
    pool: ThreadPoolExecutor,
    futures: dict[str, Future[IO[bytes]]],
    fetch: Fetch,
    entry: TreeEntry,
) -> None:
    if entry.sha != EMPTY_BLOB and entry.sha not in futures:
        futures[entry.sha] = pool.submit(fetch, entry.sha, entry.path)


def _check_link(path: str, target_bytes: bytes) -> None:
    """One link's own text, checked early as the archive reader does (the whole tree's
    links are checked by the consumer, `providers.safety.check_links`)."""
    target = target_bytes.decode("utf-8", "surrogateescape")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        msg = f"The symlink {path} points outside the project: {target!r}"
        raise UnsafeInput(msg)
