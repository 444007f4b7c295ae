"""The one error tree every forge adapter raises.

    ProviderError                 anything a forge (or its double) refused or failed at
    ├── NotFound                  repository, branch, commit or path does not exist
    ├── AuthenticationFailed      the token is missing, wrong or expired (HTTP 401)
    ├── PermissionDenied          the token is valid but may not do this (HTTP 403)
    ├── Conflict                  the branch moved and touched the same paths; `.paths`
    ├── RateLimited               the forge asked us to slow down; `.retry_at`
    ├── Unavailable               5xx, timeouts, dropped connections; `.retry_at` if known
    └── InvalidRequest            the forge (or we, before asking) refused the input
        ├── AlreadyExists         a branch or object of that name exists
        ├── UnsafeInput           an archive, path or branch name we will not touch
        └── Refused               any other 4xx; `.status`, and the forge's `.message`

Adapters translate SDK and HTTP errors into this tree in exactly one place each
(`map_*_errors` context managers), always `raise ... from exc`, so callers never see
PyGithub, python-gitlab, httpx or dulwich exceptions. Which class a status becomes is
decided once, by `from_status`, for every adapter: a forge's bare 429 is a rate limit
whatever words come with it. Every error carries a reason and an
instruction (Meltano's `MeltanoError` convention): `str(err)` is "reason. instruction."

Messages never contain tokens: adapters build them from status codes, paths and the
forge's own `message` field, never from request headers or URLs with credentials.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from providers.backoff import retry_at_from_headers, says_slow_down


class ProviderError(Exception):
    """Base class: a forge operation failed. `reason` says what, `instruction` what to do."""

    default_instruction = "Check the repository settings and try again"

    def __init__(self, reason: str, instruction: str | None = None) -> None:
        self.reason = reason.rstrip(".")
        self.instruction = (instruction or self.default_instruction).rstrip(".")
        super().__init__(f"{self.reason}. {self.instruction}.")


class NotFound(ProviderError):
    """The repository, branch, commit or file does not exist (or the token cannot see it)."""

    default_instruction = (
        "Check MELTANO_FORGE_REPO and the branch name; a private repository also answers "
        "'not found' to a token that cannot read it"
    )


class AuthenticationFailed(ProviderError):
    """The forge did not accept the token."""

    default_instruction = "Set a valid token in MELTANO_FORGE_TOKEN or MELTANO_FORGE_TOKEN_FILE"


def token_refused(forge: str, action: str, token_set: bool) -> AuthenticationFailed:
    """A 401, worded for whether a token was sent at all."""
    if not token_set:
        return AuthenticationFailed(
            f"No token is set, and {forge} answered 401 to {action}",
            "Set MELTANO_FORGE_TOKEN, or MELTANO_FORGE_TOKEN_FILE to a file holding the token",
        )
    return AuthenticationFailed(f"{forge} rejected the token while trying to {action}")


class PermissionDenied(ProviderError):
    """The token is valid but lacks the scope or role for this operation."""

    default_instruction = (
        "Give the token write access to the repository contents "
        "(GitHub: contents:write; GitLab: api scope and Developer role)"
    )


class Conflict(ProviderError):
    """The branch moved since the expected head and changed some of the same paths."""

    default_instruction = "Pull the branch, merge the changes and commit again"

    def __init__(
        self, paths: Iterable[str], reason: str | None = None, instruction: str | None = None
    ) -> None:
        self.paths: tuple[str, ...] = tuple(sorted(set(paths)))
        shown = ", ".join(self.paths[:10]) + (" …" if len(self.paths) > 10 else "")
        super().__init__(
            reason or f"The branch changed upstream in the same files: {shown}", instruction
        )


class _Retryable(ProviderError):
    """An error that may go away by itself; `retry_at` says when to try again, if known."""

    def __init__(
        self,
        reason: str,
        instruction: str | None = None,
        retry_at: dt.datetime | None = None,
    ) -> None:
        self.retry_at = retry_at
        if instruction is None and retry_at is not None:
            instruction = f"Try again after {retry_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
        super().__init__(reason, instruction)


class RateLimited(_Retryable):
    """The forge's primary or secondary rate limit was hit and retries ran out."""

    default_instruction = (
        "Wait a few minutes before trying again, or use a token with a higher limit"
    )


class Unavailable(_Retryable):
    """The forge answered 5xx, timed out or dropped the connection, and retries ran out."""

    default_instruction = "The forge may be down or unreachable; try again in a few minutes"


class InvalidRequest(ProviderError):
    """The forge refused the request as malformed, or we refused it before sending."""

    default_instruction = "Correct the input and try again"


class AlreadyExists(InvalidRequest):
    """A branch (or another named object) with that name already exists."""

    default_instruction = "Use the existing one or choose another name"


class UnsafeInput(InvalidRequest):
    """An archive entry, path or branch name that could escape or corrupt the project."""

    default_instruction = "Nothing was written; check the repository contents and the name given"


class Refused(InvalidRequest):
    """A 4xx the table has no class for, with the forge's own `message`, which adapters
    react to ("not a fast forward", "already exists", "no commits between")."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str | None = None,
        instruction: str | None = None,
        kind: str | None = None,
    ) -> None:
        self.status, self.message, self.kind = status, message, kind
        super().__init__(
            reason or f"The forge refused the request ({status}): {message}", instruction
        )


def from_status(
    status: int,
    *,
    forge: str,
    action: str,
    detail: str = "",
    headers: Mapping[str, str] | None = None,
    token_set: bool = True,
    reason: str | None = None,
    instruction: str | None = None,
) -> ProviderError:
    """The one table from an HTTP status to the error tree, for every adapter.

    `forge` and `action` word the reason ("GitHub denied permission to move branch 'x'");
    a forge whose `detail` is already worded for a person (our own service) passes it as
    `reason`, with its own `instruction`. 0 stands for "no status at all" (a response
    python-gitlab could not read). A missing token is named as such, whatever `reason`."""
    headers = headers or {}
    if status == 401:
        if not token_set or reason is None:
            return token_refused(forge, action, token_set)
        return AuthenticationFailed(reason, instruction)
    if status == 429 or (status == 403 and says_slow_down(headers, detail)):
        return RateLimited(
            reason or f"{forge}'s rate limit was hit while trying to {action}",
            instruction,
            retry_at_from_headers(headers),
        )
    if status == 403:
        return PermissionDenied(
            reason or f"{forge} denied permission to {action}: {detail}", instruction
        )
    if status == 404:
        return NotFound(reason or f"{forge} found nothing while trying to {action}", instruction)
    if status >= 500 or status == 0:
        return Unavailable(
            reason or f"{forge} answered {status or 'nothing'} while trying to {action}",
            instruction,
            retry_at_from_headers(headers),
        )
    return Refused(
        status, detail, reason or f"{forge} refused the request ({status}): {detail}", instruction
    )


def unanswered(forge: str, action: str, exc: BaseException) -> Unavailable:
    """A request that got no answer at all (a timeout, a refused or dropped connection):
    named by the transport error's class only, since its text may hold the URL."""
    return Unavailable(f"{forge} did not answer while trying to {action} ({type(exc).__name__})")
