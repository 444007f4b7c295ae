"""One blob id for the whole product: the client's hashes, the adapters' landed-write
checks and the objects the local repository writes are the same function's answers."""

from __future__ import annotations

import subprocess

import pytest
from dulwich.objects import Blob

from client import staging
from providers import blobs

SAMPLES = [b"", b"version: 1\n", b"\x00\xff binary\r\n", bytes(range(256)) * 300]


def test_the_client_hashes_with_the_providers_blob_id() -> None:
    assert staging.blob_sha is blobs.blob_sha


@pytest.mark.parametrize("data", SAMPLES, ids=["empty", "text", "binary", "large"])
def test_blob_ids_are_gits_own(data: bytes) -> None:
    git = subprocess.run(
        ["git", "hash-object", "--stdin"], input=data, capture_output=True, check=True
    )
    assert blobs.blob_sha(data) == git.stdout.decode().strip()
    assert blobs.blob_sha(data) == Blob.from_string(data).id.decode(), "as dulwich stores it"
