"""Back-off: bounded, jittered, and obedient to the forges' own headers."""

from __future__ import annotations

import datetime as dt

import pytest

from providers.errors import RateLimited, Unavailable
from providers.retry import Retrier, RetryPolicy, retry_at_from_headers

NOW = 1_800_000_000.0


def test_retry_after_seconds_and_dates() -> None:
    assert retry_at_from_headers({"Retry-After": "30"}, NOW) == dt.datetime.fromtimestamp(
        NOW + 30, dt.UTC
    )
    when = retry_at_from_headers({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, NOW)
    assert when == dt.datetime(2026, 10, 21, 7, 28, tzinfo=dt.UTC)


def test_github_and_gitlab_reset_headers() -> None:
    github = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 90)}
    assert retry_at_from_headers(github, NOW) == dt.datetime.fromtimestamp(NOW + 90, dt.UTC)
    assert (
        retry_at_from_headers({"x-ratelimit-remaining": "12", "x-ratelimit-reset": "1"}, NOW)
        is None
    )
    gitlab = {"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(NOW) + 60)}
    assert retry_at_from_headers(gitlab, NOW) == dt.datetime.fromtimestamp(NOW + 60, dt.UTC)
    assert retry_at_from_headers(
        {"RateLimit-Remaining": "0", "RateLimit-Reset": "5"}, NOW
    ) == dt.datetime.fromtimestamp(NOW + 5, dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backoff_is_bounded_and_jittered() -> None:
    clock = Clock()
    retrier = Retrier(
        RetryPolicy(attempts=5, base_delay=1, max_delay=4),
        sleep=clock.sleep,
        clock=lambda: clock.now,
        jitter=lambda: 0.5,
    )
    calls = []

    def failing() -> None:
        calls.append(1)
        raise Unavailable("502")

    with pytest.raises(Unavailable) as caught:
        retrier.call(failing)
    assert len(calls) == 5
    assert clock.sleeps == [0.5, 1.0, 2.0, 2.0]
    assert caught.value.retry_at is not None
    assert "gave up" in str(caught.value)


def test_retry_after_is_waited_for_and_long_ones_are_not() -> None:
    clock = Clock()
    retrier = Retrier(
        RetryPolicy(attempts=3, max_wait=60),
        sleep=clock.sleep,
        clock=lambda: clock.now,
        jitter=lambda: 0.0,
    )
    answers = [RateLimited("429", retry_at=dt.datetime.fromtimestamp(NOW + 10, dt.UTC))]

    def flaky() -> str:
        if answers:
            raise answers.pop()
        return "ok"

    assert retrier.call(flaky) == "ok"
    assert clock.sleeps == [10.0]

    far = dt.datetime.fromtimestamp(clock.now + 3600, dt.UTC)

    def limited() -> str:
        raise RateLimited("429", retry_at=far)

    with pytest.raises(RateLimited) as caught:
        retrier.call(limited)
    assert caught.value.retry_at == far
    assert clock.sleeps == [10.0]


def test_writes_are_verified_before_a_retry() -> None:
    clock = Clock()
    retrier = Retrier(RetryPolicy(attempts=3), sleep=clock.sleep, clock=lambda: clock.now)
    sent = []

    def write() -> str:
        sent.append(1)
        raise Unavailable("connection dropped after the write")

    assert retrier.call(write, verify=lambda: "landed") == "landed"
    assert sent == [1]
    assert retrier.call(lambda: "first", verify=lambda: None) == "first"


def test_a_lost_write_is_looked_for_once_per_attempt() -> None:
    """The worst case: every write loses its response and most looks fail too. Each
    attempt writes once and looks once; the look never retries on its own."""
    clock = Clock()
    retrier = Retrier(
        RetryPolicy(attempts=4), sleep=clock.sleep, clock=lambda: clock.now, jitter=lambda: 0.0
    )
    calls: list[str] = []

    def write() -> str:
        calls.append("write")
        raise Unavailable("connection dropped after the write")

    def look() -> str | None:
        calls.append("look")
        if calls.count("look") % 4:
            raise Unavailable("502 while reading the branch")
        return None

    with pytest.raises(Unavailable, match="gave up"):
        retrier.call(write, verify=look)
    assert calls.count("write") == 4
    assert len(calls) <= 2 * 4, calls
    assert len(clock.sleeps) == 3
