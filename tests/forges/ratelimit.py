"""GitLab's archive download limit, for the GitLab double: 5 a minute per user on gitlab.com.

GitLab counts archive requests per project and user (`Gitlab::ApplicationRateLimiter`,
key `project_repositories_archive`, scope `[project, user]`) in fixed windows of a minute,
the refused ones included, and answers a request over the limit with 429. The body is the
archive endpoint's own JSON (`{"message": {"error": "This archive has been requested too
many times. Try again later."}}`); with `answer="throttle"` it is the plain `Retry later`
that Rack::Attack's user and IP throttles send instead (the shape a rate-limiting proxy in
front of GitLab is likely to copy). Either way the headers say when to come back:
`Retry-After` (seconds left in the window), `RateLimit-Limit`, `RateLimit-Observed`,
`RateLimit-Remaining`, `RateLimit-Reset` (epoch) and `RateLimit-ResetTime` (HTTP date).

The clock is injectable (`ManualClock`), so a test moves through windows without sleeping.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.forges.server import Request, Response

WINDOW = 60
"""Seconds of one counting window (GitLab's interval for the archive limit)."""
ARCHIVE_MESSAGE = "This archive has been requested too many times. Try again later."
"""What GitLab's archive endpoint says over the limit (lib/api/repositories.rb)."""
THROTTLE_BODY = b"Retry later\n"
"""What Rack::Attack's throttles answer (GitLab's general user and IP limits)."""


class ManualClock:
    """A clock a test moves by hand: `clock()` is the time, `advance(s)` moves it on."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        with self._lock:
            self.now += seconds


@dataclass
class ArchiveLimit:
    """At most `per_minute` archive downloads per user and project in each window."""

    per_minute: int
    clock: Callable[[], float] = time.time
    answer: str = "archive"
    """'archive' (the endpoint's JSON) or 'throttle' (Rack::Attack's plain text)."""
    served: int = 0
    """Archive requests let through."""
    refused: int = 0
    """Archive requests answered 429."""
    _counts: dict[tuple[str, str, int], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.per_minute < 1:
            msg = "the archive limit must allow at least one download a minute"
            raise ValueError(msg)
        if self.answer not in ("archive", "throttle"):
            msg = f"unknown answer style {self.answer!r}: use 'archive' or 'throttle'"
            raise ValueError(msg)

    def refuse(self, request: Request, project: str, user: str | None) -> Response | None:
        """Count this archive request; GitLab's 429 when it is over the limit, else None."""
        now = self.clock()
        window = int(now // WINDOW)
        key = (user or f"ip:{request.headers.get('x-forwarded-for', 'loopback')}", project, window)
        with self._lock:
            observed = self._counts[key] = self._counts.get(key, 0) + 1
            for old in [k for k in self._counts if k[2] < window]:
                del self._counts[old]
            over = observed > self.per_minute
            if over:
                self.refused += 1
            else:
                self.served += 1
        if not over:
            return None
        reset = (window + 1) * WINDOW
        headers = {
            "Retry-After": str(max(1, math.ceil(reset - now))),
            "RateLimit-Limit": str(self.per_minute),
            "RateLimit-Observed": str(observed),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(reset),
            "RateLimit-ResetTime": email.utils.formatdate(reset, usegmt=True),
        }
        if self.answer == "throttle":
            return Response(429, THROTTLE_BODY, headers, content_type="text/plain")
        return Response.json(429, {"message": {"error": ARCHIVE_MESSAGE}}, headers)
