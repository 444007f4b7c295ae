"""Bounded, jittered retries that honour the forge's own back-off headers.

One `Retrier` per adapter wraps every request. Reads are simply retried. Writes pass a
`verify` callback: after a lost response (a 5xx, a timeout, a dropped connection) we read
the branch first and only retry if the write did not land, so nothing applies twice.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

from providers.errors import RateLimited, Unavailable

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


def retry_at_from_headers(
    headers: Mapping[str, str], now: float | None = None
) -> dt.datetime | None:
    """When the forge says we may try again: `Retry-After` (seconds or HTTP date), GitHub's
    `x-ratelimit-reset` when `x-ratelimit-remaining` is 0, or GitLab's `RateLimit-Reset`."""
    now = time.time() if now is None else now
    lower = {k.lower(): v for k, v in headers.items()}
    retry_after = lower.get("retry-after")
    if retry_after:
        if retry_after.strip().isdigit():
            return _at(now + int(retry_after))
        parsed = email.utils.parsedate_to_datetime(retry_after)
        if parsed is not None:
            return parsed
    if lower.get("x-ratelimit-remaining") == "0" and lower.get("x-ratelimit-reset", "").isdigit():
        return _at(float(lower["x-ratelimit-reset"]))
    reset = lower.get("ratelimit-reset", "")
    if lower.get("ratelimit-remaining") == "0" and reset.isdigit():
        value = float(reset)
        # GitLab sends an epoch; the IETF draft a delta. Epochs are far larger.
        return _at(value if value > 1_000_000_000 else now + value)
    return None


def _at(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


class Retrier:
    """Runs a forge call under a `RetryPolicy`; the clock and sleep are injectable."""

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

    def call(
        self,
        fn: Callable[[], T],
        *,
        verify: Callable[[], T | None] | None = None,
    ) -> T:
        """Call `fn` until it succeeds or the policy runs out.

        `verify` is for writes: after an `Unavailable` it is asked (with retries of its own)
        whether the write landed anyway, and its non-None answer is returned as the result."""
        last: RateLimited | Unavailable | None = None
        for attempt in range(self.policy.attempts):
            try:
                return fn()
            except RateLimited as exc:
                last = exc
            except Unavailable as exc:
                last = exc
                if verify is not None:
                    landed = self.call(verify)
                    if landed is not None:
                        log.info("the write landed although its response was lost")
                        return landed
            if attempt + 1 == self.policy.attempts:
                break
            delay = self._delay(attempt, last.retry_at)
            if delay is None:
                break
            log.info("retrying in %.1fs after: %s", delay, last.reason)
            self._sleep(delay)
        assert last is not None  # noqa: S101 - the loop ran at least once and failed
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

    def pause(self, attempt: int) -> None:
        """Sleep a jittered back-off before trying again after losing a race for a ref."""
        self._sleep(self._jitter() * min(2.0, 0.05 * 2 ** min(attempt, 6)))

    def _backoff(self, attempt: int) -> float:
        return float(min(self.policy.max_delay, self.policy.base_delay * 2**attempt))

    def _delay(self, attempt: int, retry_at: dt.datetime | None) -> float | None:
        delay = self._jitter() * self._backoff(attempt)
        if retry_at is not None:
            wait = retry_at.timestamp() - self._clock()
            if wait > self.policy.max_wait:
                return None
            delay = max(delay, wait)
        return delay


def _exhausted(
    last: RateLimited | Unavailable, now: float, backoff: float
) -> RateLimited | Unavailable:
    retry_at = last.retry_at or _at(now + backoff)
    kind = type(last)
    return kind(f"{last.reason} (gave up after retries)", retry_at=retry_at)
