"""When a forge says we may try again: its back-off headers, read in one place.

Both the error table (`errors.from_status`, which puts the time on `RateLimited` and
`Unavailable`) and the retry mechanism (`retry.Retrier`, which waits for it) need this,
so it sits below both.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Mapping


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
            return at(now + int(retry_after))
        parsed = email.utils.parsedate_to_datetime(retry_after)
        if parsed is not None:
            return parsed
    if lower.get("x-ratelimit-remaining") == "0" and lower.get("x-ratelimit-reset", "").isdigit():
        return at(float(lower["x-ratelimit-reset"]))
    reset = lower.get("ratelimit-reset", "")
    if lower.get("ratelimit-remaining") == "0" and reset.isdigit():
        value = float(reset)
        # GitLab sends an epoch; the IETF draft a delta. Epochs are far larger.
        return at(value if value > 1_000_000_000 else now + value)
    return None


def says_slow_down(headers: Mapping[str, str], message: str) -> bool:
    """Whether a 403 is really a rate limit: GitHub answers its primary and secondary
    limits with 403 and says so in its headers or its message."""
    lower = {k.lower(): v for k, v in headers.items()}
    return (
        "rate limit" in message.lower()
        or lower.get("x-ratelimit-remaining") == "0"
        or "retry-after" in lower
    )


def at(epoch: float) -> dt.datetime:
    """An epoch as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
