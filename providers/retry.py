"""The one retry mechanism: tenacity, driven by the forge's own back-off headers.

Every loop that tries again goes through a `Retrier`: requests that failed on the way
(`call`), and compare-and-swaps lost to other writers (`contend`: GitHub's ref update and
GraphQL mutation, the local repository's ref locks). Only two things are ours: reading
when the forge says we may try again (`providers.backoff`), and, for a write whose
response was lost, looking whether it landed before sending it again (`verify`). That
look is one call inside the same attempt, never a retry loop of its own, so the worst case
is `attempts` writes and `attempts` looks, not `attempts` squared.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from providers.backoff import at, retry_at_from_headers
from providers.errors import ProviderError, RateLimited, Unavailable

__all__ = ["LostRace", "Pause", "Retrier", "RetryPolicy", "retry_at_from_headers"]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up."""

    attempts: int = 5
    """Total tries, the first included."""
    base_delay: float = 0.5
    """Seconds before the second try; doubles each time, with full jitter."""
    max_delay: float = 20.0
    """Ceiling of one back-off sleep."""
    max_wait: float = 60.0
    """Longest `Retry-After` we sleep through; a longer one fails at once with `retry_at`."""


@dataclass(frozen=True)
class Pause:
    """The back-off between tries at a compare-and-swap: `first` doubling up to `cap`,
    with full jitter, so writers that lost to each other spread out."""

    first: float
    """Most seconds before the second try."""
    cap: float
    """Most seconds before any try."""


class LostRace(Exception):
    """Raised inside `Retrier.contend`'s attempt: another writer won; try again."""


class Retrier:
    """Runs forge calls under a `RetryPolicy`; the clock, sleep and jitter are injectable."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    def call(self, fn: Callable[[], T], *, verify: Callable[[], T | None] | None = None) -> T:
        """Call `fn` until it succeeds or the policy runs out.

        `verify` is for writes: after an `Unavailable` (the write may have landed) it is
        asked once, in the same attempt, whether it did; its non-None answer is the result.
        If the look fails too, the attempt failed and the next one looks again."""

        def attempt() -> T:
            try:
                return fn()
            except Unavailable:
                if verify is None:
                    raise
                landed = verify()
                if landed is None:
                    raise
                log.info("the write landed although its response was lost")
                return landed

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((RateLimited, Unavailable)),
            stop=self._stop,
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=_log_retry,
        )
        try:
            return retrying(attempt)
        except tenacity.RetryError as gave_up:
            last = gave_up.last_attempt.exception()
            assert isinstance(last, (RateLimited, Unavailable))  # noqa: S101 - what `retry` retries
            raise _exhausted(last, self._clock(), self._backoff(self.policy.attempts)) from last

    def mapped(
        self,
        errors: Callable[[], AbstractContextManager[object]],
        fn: Callable[[], T],
        verify: Callable[[], T | None] | None = None,
    ) -> T:
        """`call`, with `fn` and `verify` each run inside an adapter's error mapping."""

        def attempt() -> T:
            with errors():
                return fn()

        def check() -> T | None:
            assert verify is not None  # noqa: S101 - only passed when verify is set
            with errors():
                return verify()

        return self.call(attempt, verify=check if verify else None)

    def contend(
        self,
        attempt: Callable[[], T],
        *,
        tries: int,
        pause: Pause,
        gave_up: Callable[[], ProviderError],
    ) -> T:
        """Run `attempt` until it does not raise `LostRace`, at most `tries` times, with a
        jittered `pause` between; then raise `gave_up()`."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(LostRace),
            stop=tenacity.stop_after_attempt(tries),
            wait=lambda state: (
                self._jitter() * min(pause.cap, pause.first * 2**state.attempt_number)
            ),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except LostRace:
            raise gave_up() from None

    def _backoff(self, attempt: int) -> float:
        return float(min(self.policy.max_delay, self.policy.base_delay * 2**attempt))

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Full-jitter exponential back-off, but never less than the forge asked for."""
        delay = self._jitter() * self._backoff(state.attempt_number - 1)
        retry_at = _retry_at(state)
        if retry_at is not None:
            delay = max(delay, retry_at.timestamp() - self._clock())
        return delay

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        """Stop when the tries run out, or at once when the forge asks for a longer wait
        than the policy sleeps through: the error then says when to try again."""
        if state.attempt_number >= self.policy.attempts:
            return True
        retry_at = _retry_at(state)
        return retry_at is not None and retry_at.timestamp() - self._clock() > self.policy.max_wait


def _retry_at(state: tenacity.RetryCallState) -> dt.datetime | None:
    error = state.outcome.exception() if state.outcome else None
    return error.retry_at if isinstance(error, (RateLimited, Unavailable)) else None


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    log.info("retrying in %.1fs after: %s", delay, getattr(error, "reason", error))


def _exhausted(
    last: RateLimited | Unavailable, now: float, backoff: float
) -> RateLimited | Unavailable:
    retry_at = last.retry_at or at(now + backoff)
    kind = type(last)
    return kind(f"{last.reason} (gave up after retries)", retry_at=retry_at)
