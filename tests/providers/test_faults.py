"""Injected faults: 5xx, 429 and 403 with Retry-After, and writes whose response is lost.
None may cause a duplicate or lost commit; exhausted retries say when to try again."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from providers.contract import FileChange, FileMode
from providers.errors import RateLimited, Unavailable
from tests.conftest import FAST_RETRY, ForgeEnv
from tests.forges.server import Fault

REMOTE = ["github", "github-graphql", "gitlab"]

# The request that moves the branch, per forge: losing its response is the dangerous case.
WRITE = {
    "github": ("PATCH", r"/git/refs/heads/main$"),
    "github-graphql": ("POST", r"^/api/graphql$"),
    "gitlab": ("POST", r"/repository/commits$"),
}
FIRST = {
    "github": ("GET", r"/git/commits/"),
    "github-graphql": ("POST", r"^/api/graphql$"),
    "gitlab": ("POST", r"/repository/commits$"),
}


def commit_one(
    env: ForgeEnv, base: str, path: str = "meltano.yml", content: bytes = b"v: 2\n"
) -> str:
    forge = env.new_forge()
    return forge.commit(
        "main", base, [FileChange.put(path, content, base_mode=FileMode.REGULAR)], f"edit {path}"
    ).sha


def commits_after(env: ForgeEnv, base: str) -> int:
    return int(env.git("rev-list", "--count", f"{base}..main").strip())


@pytest.mark.parametrize("env", REMOTE, indirect=True)
def test_502s_are_retried_without_duplicates(env: ForgeEnv) -> None:
    assert env.double is not None
    base = env.seed({"meltano.yml": b"v: 1\n"})
    method, path = FIRST[env.kind]
    env.double.inject(
        Fault(method=method, path=path, status=502, body={"message": "Server Error"}, times=2)
    )
    sha = commit_one(env, base)
    assert env.head() == sha
    assert commits_after(env, base) == 1
    assert env.requests(method, path) >= 3


@pytest.mark.parametrize("env", REMOTE, indirect=True)
def test_lost_response_after_the_write_is_not_applied_twice(env: ForgeEnv) -> None:
    assert env.double is not None
    base = env.seed({"meltano.yml": b"v: 1\n"})
    method, path = WRITE[env.kind]
    mutations = env.double.graphql.mutations if env.kind == "github-graphql" else 0  # type: ignore[attr-defined]
    env.double.inject(Fault(method=method, path=path, drop_after_apply=True))
    sha = commit_one(env, base)
    assert env.head() == sha
    assert commits_after(env, base) == 1
    assert env.git("show", "main:meltano.yml") == "v: 2\n"
    if env.kind == "github-graphql":  # the check that found it was a GraphQL query too
        sent = env.double.graphql.mutations - mutations  # type: ignore[attr-defined]
        assert sent == 1, "the landed write was found, not sent again"
    else:
        assert env.requests(method, path) == 1, "the landed write was found, not sent again"


@pytest.mark.parametrize("env", REMOTE, indirect=True)
def test_429_with_retry_after_is_honoured(env: ForgeEnv) -> None:
    assert env.double is not None
    base = env.seed({"meltano.yml": b"v: 1\n"})
    method, path = WRITE[env.kind]
    env.double.inject(
        Fault(
            method=method,
            path=path,
            status=429,
            headers={"Retry-After": "1"},
            body={"message": "slow down"},
        )
    )
    started = dt.datetime.now(dt.UTC)
    sha = commit_one(env, base)
    writes = env.double.requests(method, path)
    assert len(writes) == 2
    assert writes[1].at - writes[0].at >= 0.9, "waited for Retry-After before the second try"
    assert env.head() == sha
    assert commits_after(env, base) == 1
    assert dt.datetime.now(dt.UTC) - started < dt.timedelta(seconds=30)


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_github_secondary_rate_limit_403_is_retried(env: ForgeEnv) -> None:
    assert env.double is not None
    base = env.seed({"meltano.yml": b"v: 1\n"})
    message = {
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",  # noqa: E501 - the forge's own words
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
    }
    env.double.inject(
        Fault(
            method="POST",
            path=r"/git/trees$",
            status=403,
            headers={"retry-after": "1"},
            body=message,
        )
    )
    sha = commit_one(env, base)
    assert env.head() == sha
    assert commits_after(env, base) == 1


@pytest.mark.parametrize("env", REMOTE, indirect=True)
def test_exhausted_retries_say_when_to_try_again(env: ForgeEnv) -> None:
    assert env.double is not None
    base = env.seed({"meltano.yml": b"v: 1\n"})
    env.double.inject(Fault(status=503, body={"message": "Service Unavailable"}, times=100))
    with pytest.raises(Unavailable) as caught:
        commit_one(env, base)
    assert caught.value.retry_at is not None
    assert "Try again after" in str(caught.value)
    env.double.faults.clear()
    assert env.head() == base
    reset = int(dt.datetime.now(dt.UTC).timestamp()) + 3600
    headers = (
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
        if env.kind.startswith("github")
        else {"RateLimit-Remaining": "0", "RateLimit-Reset": str(reset), "Retry-After": "3600"}
    )
    status = 403 if env.kind.startswith("github") else 429
    env.double.inject(
        Fault(
            status=status, headers=headers, body={"message": "API rate limit exceeded"}, times=100
        )
    )
    env.clear_log()
    with pytest.raises(RateLimited) as limited:
        env.new_forge().branch("main")
    assert limited.value.retry_at is not None
    assert abs(limited.value.retry_at.timestamp() - reset) < 5
    assert env.requests() == 1, "a reset an hour away is not slept through"
    env.double.faults.clear()
    assert env.head() == base


@pytest.mark.parametrize("env", REMOTE, indirect=True)
def test_slow_forge_within_timeout_still_works(env: ForgeEnv) -> None:
    assert env.double is not None
    base = env.seed({"meltano.yml": b"v: 1\n"})
    env.double.inject(Fault(delay=0.3, times=3))
    sha = commit_one(env, base)
    assert env.head() == sha


@dataclass
class ThreeInFour(Fault):
    """Applies to three matching requests in four: a look that fails three times, then
    answers, again and again."""

    seen: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request (the fourth of each run goes through)."""
        if not super().matches(method, path):
            return False
        self.seen += 1
        return self.seen % 4 != 0


@pytest.mark.parametrize("env", ["gitlab"], indirect=True)
def test_a_lost_write_costs_requests_in_proportion_to_the_attempts(env: ForgeEnv) -> None:
    """The worst case of a write whose responses keep getting lost: every attempt writes
    once and looks once whether the write landed. The look is no retry loop of its own,
    so the requests grow with the attempts, not with their square."""
    assert env.double is not None
    base = env.seed({"meltano.yml": b"v: 1\n"})
    commits = r"/repository/commits$"
    lost = {"message": "502 Bad Gateway"}
    env.double.inject(Fault(method="POST", path=commits, status=502, body=lost, times=1000))
    env.double.inject(ThreeInFour(method="GET", path=commits, status=502, body=lost, times=1000))
    env.clear_log()
    with pytest.raises(Unavailable, match="gave up"):
        commit_one(env, base)
    attempts = FAST_RETRY.attempts
    assert env.requests("POST", commits) == attempts
    assert env.requests("GET", commits) <= attempts, "one look per lost write"
    env.double.faults.clear()
    assert env.head() == base


@pytest.mark.parametrize("env", REMOTE, indirect=True)
def test_a_403_that_asks_to_slow_down_is_a_rate_limit_on_every_forge(env: ForgeEnv) -> None:
    """One status table for every adapter: a 403 with Retry-After (GitHub's secondary
    limit, or a proxy's) is waited out and retried on GitLab as on GitHub."""
    assert env.double is not None
    base = env.seed({"meltano.yml": b"v: 1\n"})
    method, path = WRITE[env.kind]
    env.double.inject(
        Fault(
            method=method,
            path=path,
            status=403,
            headers={"Retry-After": "1"},
            body={"message": "You have exceeded a rate limit. Please wait before you try again."},
        )
    )
    sha = commit_one(env, base)
    assert len(env.double.requests(method, path)) == 2
    assert env.head() == sha
    assert commits_after(env, base) == 1
