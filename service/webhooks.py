"""Verify forge webhooks and turn pushes and pull/merge requests into events (no HTTP here,
only logic)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

ZERO = "0" * 40
SHA = re.compile(r"[0-9a-f]{40}")
TIMESTAMP_TOLERANCE = 300
"""Seconds a signed GitLab delivery's timestamp may be from our clock (Standard Webhooks)."""
GITHUB_COMMIT_CAP = 2048
GITLAB_COMMIT_CAP = 20


class BadSignature(Exception):
    """The delivery is not signed with the project's secret."""


@dataclass(frozen=True)
class Push:
    """A branch push, normalized across forges."""

    forge: str
    delivery_id: str
    event: str
    branch: str | None
    """None for tag pushes and other refs."""
    before: str
    after: str
    deleted: bool
    forced: bool
    paths: frozenset[str] | None
    """Changed paths, or None when the payload cannot tell (truncated, forced, new branch)."""
    digest: str = ""
    """sha256 of the signed body: the same body twice is a replay, whatever its delivery id."""


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def github_signature(secret: str, body: bytes) -> str:
    """`sha256=<hex>` as GitHub sends in X-Hub-Signature-256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_github(headers: dict[str, str], body: bytes, secret: SecretStr | None) -> None:
    """Constant-time check of X-Hub-Signature-256; raises BadSignature."""
    given = headers.get("x-hub-signature-256", "")
    if (
        secret is None
        or not given
        or not _equal(given, github_signature(secret.get_secret_value(), body))
    ):
        msg = "X-Hub-Signature-256 is missing or does not match the project's webhook secret"
        raise BadSignature(msg)


def verify_gitlab(
    headers: dict[str, str],
    body: bytes,
    secret: SecretStr | None,
    signing: SecretStr | None,
    now: float | None = None,
) -> None:
    """X-Gitlab-Token (constant time), or the signing-token form (`webhook-signature`
    HMAC-SHA256 over `id.timestamp.body`, base64) when a signing token is configured. A
    signed delivery whose timestamp is more than `TIMESTAMP_TOLERANCE` away is refused, as
    the Standard Webhooks specification asks, so a captured delivery cannot be replayed."""
    if signing is not None and headers.get("webhook-signature"):
        stamp = headers.get("webhook-timestamp", "")
        current = time.time() if now is None else now
        if not stamp.isdigit() or abs(current - int(stamp)) > TIMESTAMP_TOLERANCE:
            msg = (
                "webhook-timestamp is missing or more than "
                f"{TIMESTAMP_TOLERANCE // 60} minutes from the service's clock"
            )
            raise BadSignature(msg)
        signed = (
            f"{headers.get('webhook-id', '')}.{headers.get('webhook-timestamp', '')}.".encode()
            + body
        )
        digest = hmac.new(_signing_key(signing.get_secret_value()), signed, hashlib.sha256).digest()
        expected = base64.b64encode(digest).decode()
        offered = [part.split(",", 1)[-1] for part in headers["webhook-signature"].split()]
        if any(_equal(expected, o) for o in offered):
            return
        msg = "webhook-signature does not match the project's signing token"
        raise BadSignature(msg)
    given = headers.get("x-gitlab-token", "")
    if secret is None or not given or not _equal(given, secret.get_secret_value()):
        msg = "X-Gitlab-Token is missing or does not match the project's webhook secret"
        raise BadSignature(msg)


def _signing_key(token: str) -> bytes:
    if token.startswith("whsec_"):
        return base64.b64decode(token.removeprefix("whsec_"))
    return token.encode()


def which_forge(headers: dict[str, str]) -> str | None:
    """'github' or 'gitlab' from the delivery headers."""
    if "x-github-event" in headers:
        return "github"
    if "x-gitlab-event" in headers:
        return "gitlab"
    return None


def delivery_id(forge: str, headers: dict[str, str], body: bytes) -> str:
    """The forge's delivery id (stable across redeliveries), for dedupe."""
    if forge == "github":
        key = headers.get("x-github-delivery")
    else:
        key = headers.get("idempotency-key") or headers.get("x-gitlab-event-uuid")
    return f"{forge}:{key or hashlib.sha256(body).hexdigest()}"


class _Commit(BaseModel):
    model_config = ConfigDict(extra="ignore")

    added: list[str] = Field(default_factory=list)
    modified: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)


class _Push(BaseModel):
    """The fields of a GitHub or GitLab push payload we read; the rest is ignored."""

    model_config = ConfigDict(extra="ignore")

    ref: str = ""
    before: str | None = None
    after: str | None = None
    commits: list[_Commit] = Field(default_factory=list)
    deleted: bool = False
    forced: bool = False
    total_commits_count: int = 0


class BadPayload(ValueError):
    """The body is not JSON, or not shaped like a push."""


def parse(forge: str, headers: dict[str, str], body: bytes) -> Push | None:
    """The push in a delivery, or None for events we ignore; `BadPayload` when the body is
    not JSON or not shaped like a push (a list, `commits` of the wrong type, ...)."""
    event = headers.get("x-github-event") or headers.get("x-gitlab-event") or ""
    if (forge == "github" and event != "push") or (
        forge == "gitlab" and event not in ("Push Hook", "Tag Push Hook")
    ):
        return None
    try:
        data = _Push.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "the body"
        msg = f"{where}: {error['msg']}"
        raise BadPayload(msg) from None
    ref = data.ref
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    before, after = data.before or ZERO, data.after or ZERO
    commits = data.commits
    if forge == "github":
        deleted, forced = data.deleted, data.forced
        truncated = len(commits) >= GITHUB_COMMIT_CAP
    else:
        deleted, forced = after == ZERO, False
        truncated = data.total_commits_count > len(commits)
    paths: frozenset[str] | None = frozenset(
        p for c in commits for p in (*c.added, *c.modified, *c.removed)
    )
    if truncated or forced or before == ZERO:
        paths = None
    return Push(
        forge,
        delivery_id(forge, headers, body),
        event,
        branch,
        before,
        after,
        deleted,
        forced,
        paths,
        hashlib.sha256(body).hexdigest(),
    )


CHANGE_REQUEST_EVENTS = {"github": "pull_request", "gitlab": "Merge Request Hook"}
"""The delivery header that names a pull request (GitHub) or merge request (GitLab) event."""
GITHUB_ACTIONS = frozenset({"opened", "synchronize", "reopened"})
"""`pull_request` actions that put a head commit up for review; the rest are ignored."""
GITLAB_ACTIONS = frozenset({"open", "update", "reopen"})
"""`Merge Request Hook` actions that may; an `update` counts only with new commits."""


@dataclass(frozen=True)
class ChangeRequestEvent:
    """A pull request (GitHub) or merge request (GitLab) whose head is up for review."""

    forge: str
    delivery_id: str
    event: str
    action: str
    number: int
    """PR number or MR iid."""
    head_sha: str
    source: str
    """The branch with the changes."""
    target: str
    """The branch it merges into."""
    url: str = ""
    """Where a person reviews it (the forge's word: untrusted until shown as a link)."""
    digest: str = ""
    """sha256 of the signed body, against replays."""


class _Named(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ref: str = ""
    sha: str = ""


class _Pull(BaseModel):
    model_config = ConfigDict(extra="ignore")

    number: int
    html_url: str = ""
    head: _Named
    base: _Named


class _PullRequestEvent(BaseModel):
    """The fields of a GitHub `pull_request` payload we read."""

    model_config = ConfigDict(extra="ignore")

    action: str
    number: int
    pull_request: _Pull


class _LastCommit(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = ""


class _MergeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    iid: int
    action: str = ""
    source_branch: str = ""
    target_branch: str = ""
    last_commit: _LastCommit = Field(default_factory=_LastCommit)
    oldrev: str | None = None
    """Present on an `update` that brought new commits."""
    url: str = ""


class _MergeRequestEvent(BaseModel):
    """The fields of a GitLab `Merge Request Hook` payload we read."""

    model_config = ConfigDict(extra="ignore")

    object_kind: str = "merge_request"
    object_attributes: _MergeRequest


def is_change_request(forge: str, headers: dict[str, str]) -> bool:
    """Whether the delivery is a pull request or merge request event."""
    event = headers.get("x-github-event") or headers.get("x-gitlab-event") or ""
    return CHANGE_REQUEST_EVENTS.get(forge) == event


def _validated(model: type[BaseModel], body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "the body"
        msg = f"{where}: {error['msg']}"
        raise BadPayload(msg) from None


def parse_change_request(
    forge: str, headers: dict[str, str], body: bytes
) -> ChangeRequestEvent | None:
    """The pull or merge request whose head a delivery puts up for review, or None for the
    actions that do not (closed, labelled, a GitLab title edit with no new commit);
    `BadPayload` when the body is not shaped like one."""
    event = headers.get("x-github-event") or headers.get("x-gitlab-event") or ""
    delivery = delivery_id(forge, headers, body)
    digest = hashlib.sha256(body).hexdigest()
    if forge == "github":
        pull = _validated(_PullRequestEvent, body)
        if pull.action not in GITHUB_ACTIONS:
            return None
        head, base = pull.pull_request.head, pull.pull_request.base
        found = (pull.number, head.sha, head.ref, base.ref, pull.pull_request.html_url)
        action = pull.action
    else:
        attributes = _validated(_MergeRequestEvent, body).object_attributes
        action = attributes.action
        if action not in GITLAB_ACTIONS or (action == "update" and not attributes.oldrev):
            return None
        found = (
            attributes.iid,
            attributes.last_commit.id,
            attributes.source_branch,
            attributes.target_branch,
            attributes.url,
        )
    number, sha, source, target, url = found
    if not SHA.fullmatch(sha) or not source or not target:
        msg = "the head commit's SHA and both branches are needed"
        raise BadPayload(msg)
    return ChangeRequestEvent(
        forge, delivery, event, action, number, sha, source, target, url, digest
    )
