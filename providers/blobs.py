"""The git blob id, computed in one place for the client and every adapter.

It is plain `hashlib`, so a runner that only hashes files (status, staging, patches) never
loads dulwich for it.
"""

from __future__ import annotations

import hashlib


def blob_header(size: int) -> bytes:
    """The prefix git hashes before a blob's bytes."""
    return b"blob %d\x00" % size


def blob_sha(data: bytes) -> str:
    """The git blob id of `data`: sha1 of 'blob <len>\\0' + data."""
    digest = hashlib.sha1(blob_header(len(data)), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()
