"""Every error a person sees maps to one exit code, here and nowhere else."""

from __future__ import annotations

from functools import cache

OK, FAILED, USAGE, CONFLICT, READ_ONLY, DENIED, UNAVAILABLE, UNSAFE = 0, 1, 2, 3, 4, 5, 6, 7
BUNDLED = 8
"""The command succeeded, but its changes could not be pushed: they are in a local bundle."""
CHECK_FAILED = 9
"""`meltano-forge check` found errors: the project would break a runner or leak a secret."""


@cache
def _codes() -> tuple[tuple[type[BaseException], int], ...]:
    """Error kinds and their codes, most specific first. Imported on first use, so a
    command that never fails (`check`, `--help`) does not load the settings or the
    workspace to start."""
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

    return (
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
    )


def known(error: BaseException) -> bool:
    """Whether the error is one a person is told about in its own words."""
    return any(isinstance(error, kind) for kind, _ in _codes())


def exit_code(error: BaseException) -> int:
    """The exit code for an error (SPEC §5)."""
    for kind, code in _codes():
        if isinstance(error, kind):
            return code
    return FAILED
