"""The service's plugin cache as the runner uses it in service mode.

The same entries as the folder cache (`client.plugin_cache`), held by the service for its
runners (`service.plugin_envs`, where the trust model is): a restore streams the entry
and verifies it as it unpacks (`restore_stream`), and a cold runner asks the service for
leases before it installs, so that of many runners starting at once one installs each
plugin and uploads it, and the others wait for it and restore. A service that holds no
plugin cache, or a token that may not fill it (the read role), only costs the runner its
restores: it installs as it would without one.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

from client.plugin_cache import EntryKey, pack, restore_stream
from providers.errors import NotFound, PermissionDenied, ProviderError

log = logging.getLogger(__name__)

LEASE_WAIT = 20.0
"""Seconds one lease request may wait for another runner's install (the service's bound
is 30)."""


@runtime_checkable
class PluginEnvRemote(Protocol):
    """What a forge adapter offers when its service holds plugin environments
    (`providers.service.ServiceForge`)."""

    def plugin_env(
        self, key: str
    ) -> AbstractContextManager[tuple[str, int, Iterator[bytes]] | None]:
        """The entry's SHA-256, size and bytes; None when there is none."""

    def put_plugin_env(self, key: str, fields: dict[str, str], archive: Path) -> bool:
        """Upload an entry; True when stored, False when it existed."""

    def plugin_env_leases(
        self, holder: str, keys: Sequence[str], wait: float
    ) -> tuple[dict[str, str], float]:
        """Each key's lease state and how long a granted lease lasts."""

    def release_plugin_env_leases(self, holder: str, keys: Sequence[str]) -> None:
        """Give back leases."""


class ServicePluginCache:
    """One run's view of the service's plugin cache: restores, leases, uploads."""

    def __init__(self, remote: PluginEnvRemote) -> None:
        self.remote = remote
        self.holder = uuid.uuid4().hex
        """This run's id in its leases (the service never shows it to other runners)."""
        self.leasing = True
        """False once the service said it holds no cache, or this token may not fill it."""
        self.expires_in = 60.0

    def restore(self, key: EntryKey, venv: Path) -> bool:
        """Put the service's entry for `key` at `venv`, verified as it unpacks; False when
        the service has none, or it did not verify (nothing at `venv` changed then)."""
        if str(venv) != key.venv:
            return False
        try:
            with self.remote.plugin_env(key.digest) as found:
                if found is None:
                    return False
                sha256, size, chunks = found
                why = restore_stream(_Reader(chunks), venv, sha256, size)
        except (ProviderError, OSError) as exc:
            log.warning("could not restore an environment from the service: %s", exc)
            return False
        if why:
            log.warning("the service's plugin cache entry for %s is unusable (%s)", venv, why)
            return False
        return True

    def leases(self, digests: Sequence[str], wait: float) -> dict[str, str] | None:
        """Each entry's lease state (`stored`, `granted`, `held`); None when this run
        takes no leases (the service holds no cache, this token may not fill it, or the
        service did not answer): then it installs, and uploads nothing."""
        if not self.leasing or not digests:
            return None
        try:
            states, self.expires_in = self.remote.plugin_env_leases(self.holder, digests, wait)
        except NotFound:
            log.info("the service holds no plugin cache: installing here")
            self.leasing = False
            return None
        except PermissionDenied:
            log.info("this token may not fill the service's plugin cache: installing here")
            self.leasing = False
            return None
        except ProviderError as exc:
            log.warning("the service's plugin cache did not answer (%s): installing here", exc)
            self.leasing = False
            return None
        return states

    @contextlib.contextmanager
    def renewing(self, digests: Collection[str]) -> Iterator[None]:
        """Keep this run's leases of `digests` alive while it installs them."""
        if not digests:
            yield
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(max(1.0, self.expires_in / 3)):
                with contextlib.suppress(ProviderError):
                    self.remote.plugin_env_leases(self.holder, sorted(digests), 0.0)

        thread = threading.Thread(target=renew, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def release(self, digests: Collection[str]) -> None:
        """Give back leases (an install failed): runners waiting on them go on."""
        if digests:
            with contextlib.suppress(ProviderError):
                self.remote.release_plugin_env_leases(self.holder, sorted(digests))

    def upload(
        self, key: EntryKey, venv: Path, plugin: str, packed: tuple[Path, str] | None
    ) -> str:
        """Upload `venv` as the entry for `key` (`packed`: the folder cache's archive of it
        and its SHA-256, when there is one); what the report says of it."""
        fields = {
            "plugin": plugin,
            "fingerprint": key.fingerprint,
            "python": key.python,
            "platform": key.platform,
            "venv": key.venv,
        }
        with contextlib.ExitStack() as cleanup:
            if packed is None:
                folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
                archive = folder / "entry.tar"
                sha256, _ = pack(venv, archive)
            else:
                archive, sha256 = packed
            try:
                stored = self.remote.put_plugin_env(
                    key.digest, {**fields, "sha256": sha256}, archive
                )
            except (ProviderError, OSError) as exc:
                log.warning("could not upload %s to the service's plugin cache: %s", plugin, exc)
                self.release([key.digest])
                return f"not uploaded: {exc}"
        return "uploaded to the service" if stored else "the service had it already"


class _Reader:
    """Chunks read as a file (what tarfile's stream mode asks for)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buffer = bytearray()

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buffer) < n:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        count = len(self.buffer) if n < 0 else min(n, len(self.buffer))
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data
