"""Every error a person sees maps to one exit code, here and nowhere else."""

from __future__ import annotations

from client.check_gate import CheckRefused
from client.policy import ReadOnlyBranch
from client.settings import SettingsError
from client.workspace import PullConflict
from providers.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderError,
    RateLimited,
    Unavailable,
    UnsafeInput,
)

OK, FAILED, USAGE, CONFLICT, READ_ONLY, DENIED, UNAVAILABLE, UNSAFE = 0, 1, 2, 3, 4, 5, 6, 7
BUNDLED = 8
"""The command succeeded, but its changes could not be pushed: they are in a local bundle."""
CHECK_FAILED = 9
"""`meltano-forge check` found errors: the project would break a runner or leak a secret."""

_CODES: list[tuple[type[BaseException], int]] = [
    (SettingsError, USAGE),
    (CheckRefused, CHECK_FAILED),
    (ReadOnlyBranch, READ_ONLY),
    (UnsafeInput, UNSAFE),
    (Conflict, CONFLICT),
    (PullConflict, CONFLICT),
    (AuthenticationFailed, DENIED),
    (PermissionDenied, DENIED),
    (RateLimited, UNAVAILABLE),
    (Unavailable, UNAVAILABLE),
    (NotFound, USAGE),
    (InvalidRequest, USAGE),
    (ProviderError, FAILED),
]

HANDLED: tuple[type[BaseException], ...] = tuple(kind for kind, _ in _CODES)


def exit_code(error: BaseException) -> int:
    """The exit code for an error (SPEC §5)."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return FAILED
