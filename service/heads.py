"""Branch heads remembered for a moment, so a burst of requests by branch name (fifty
runners starting at once) asks the forge once instead of fifty times.

Entries live `ttl` seconds at most, a push webhook or a commit through the service
replaces them at once, and concurrent misses for one branch share a single request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from providers.contract import Forge

TTL = 1.0


class BranchHeads:
    """`head(project, forge, branch)`: the branch's head SHA, cached for `ttl` seconds."""

    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}
        self._flights: dict[tuple[str, str], threading.Lock] = {}

    def head(self, project: str, forge: Forge, branch: str) -> str:
        """The head, from the cache while fresh, else from the forge (once per burst)."""
        key = (project, branch)
        with self._lock:
            fresh = self._fresh(key)
            if fresh is not None:
                return fresh
            flight = self._flights.setdefault(key, threading.Lock())
        with flight:
            with self._lock:
                fresh = self._fresh(key)
            if fresh is not None:
                return fresh
            sha = forge.branch(branch).head
            self.moved(project, branch, sha)
            return sha

    def _fresh(self, key: tuple[str, str]) -> str | None:
        cached = self._cache.get(key)
        if cached is not None and self._clock() - cached[1] < self.ttl:
            return cached[0]
        return None

    def moved(self, project: str, branch: str, sha: str | None) -> None:
        """A push or a commit moved the branch (None: forget it)."""
        with self._lock:
            if sha is None:
                self._cache.pop((project, branch), None)
            else:
                self._cache[(project, branch)] = (sha, self._clock())

    def forget(self, project: str) -> None:
        """Every cached head of `project` (its repository changed in the projects file)."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == project]:
                del self._cache[key]
