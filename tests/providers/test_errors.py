"""The one table from HTTP statuses to the error tree, as every adapter uses it."""

from __future__ import annotations

import datetime as dt

import pytest

from providers.errors import (
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    ProviderError,
    RateLimited,
    Refused,
    Unavailable,
    from_status,
)

SLOW_DOWN = {"Retry-After": "30"}


@pytest.mark.parametrize(
    ("status", "headers", "detail", "kind"),
    [
        (401, {}, "Bad credentials", AuthenticationFailed),
        (403, {}, "Resource not accessible by integration", PermissionDenied),
        (403, SLOW_DOWN, "", RateLimited),
        (403, {"x-ratelimit-remaining": "0"}, "", RateLimited),
        (403, {}, "API rate limit exceeded for installation", RateLimited),
        (404, {}, "Not Found", NotFound),
        (429, {}, "Too Many Requests", RateLimited),
        (429, {}, "", RateLimited),
        (500, {}, "", Unavailable),
        (503, SLOW_DOWN, "", Unavailable),
        (0, {}, "", Unavailable),
        (409, {}, "Reference already exists", Refused),
        (422, {}, "Update is not a fast forward", Refused),
    ],
)
def test_statuses_map_to_one_class_whatever_the_forge(
    status: int, headers: dict[str, str], detail: str, kind: type[ProviderError]
) -> None:
    for forge in ("GitHub", "GitLab", "the meltano-forge service"):
        error = from_status(
            status, forge=forge, action="read a branch", detail=detail, headers=headers
        )
        assert type(error) is kind, (forge, status)


def test_back_off_headers_give_the_time_to_try_again() -> None:
    before = dt.datetime.now(dt.UTC)
    error = from_status(429, forge="GitLab", action="commit", headers=SLOW_DOWN)
    assert isinstance(error, RateLimited)
    assert error.retry_at is not None
    assert dt.timedelta(seconds=25) < error.retry_at - before < dt.timedelta(seconds=35)
    assert "Try again after" in str(error)


def test_words_are_the_forges_or_its_own() -> None:
    refused = from_status(422, forge="GitHub", action="move a branch", detail="not a fast forward")
    assert isinstance(refused, Refused)
    assert (refused.status, refused.message) == (422, "not a fast forward")
    assert str(refused).startswith("GitHub refused the request (422): not a fast forward.")
    worded = from_status(
        403, forge="the service", action="answer", detail="x", reason="Branch main is read-only"
    )
    assert str(worded).startswith("Branch main is read-only.")
    unset = from_status(401, forge="GitLab", action="list branches", token_set=False)
    assert "No token is set" in str(unset)
