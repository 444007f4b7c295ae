"""The typed settings an adapter receives; adapters never read the environment."""

from __future__ import annotations

import enum
import getpass
import os
import socket
from dataclasses import dataclass, field

from pydantic import SecretStr

from providers.contract import Author
from providers.retry import RetryPolicy
from providers.safety import Limits


class ProviderKind(enum.StrEnum):
    """Which adapter talks to the repository."""

    GITHUB = "github"
    GITLAB = "gitlab"
    LOCAL = "local"
    SERVICE = "service"


@dataclass(frozen=True)
class RepoLocation:
    """Where a repository lives, resolved from its URL and the provider settings."""

    kind: ProviderKind
    """The adapter to use."""
    api_url: str
    """The API root (GitHub `/api/v3` style, GitLab `/api/v4`), or the bare repo's path."""
    path: str
    """`owner/name` on GitHub, `group/sub/name` on GitLab, the folder for local."""
    web_url: str
    """The repository's page (or `file://` URL)."""


@dataclass(frozen=True)
class ForgeConfig:
    """Everything an adapter needs; built once from the settings model."""

    location: RepoLocation
    """Where the repository is."""
    token: SecretStr | None = None
    """Forge (or service) token; a SecretStr so it never prints."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retry and back-off policy."""
    timeout: float = 30.0
    """Seconds before a request is abandoned."""
    archive_limits: Limits = field(default_factory=Limits)
    """Caps on archive size."""
    graphql_commits: bool = True
    """GitHub: commit through GraphQL `createCommitOnBranch` when the change set allows."""
    seconds_between_writes: float = 0.0
    """GitHub: minimum gap between mutating requests. Our commits are 2-4 writes apart,
    far below the bulk-write pattern GitHub's advice targets; secondary limits are
    handled by honouring Retry-After instead of a fixed 1 s gap per write."""
    user_agent: str = "meltano-forge"
    """Sent with every request so forge admins can tell our traffic apart."""
    default_author: Author | None = None
    """Local adapter only: the author when none is given (there is no token owner). The
    settings fill it from `GIT_AUTHOR_*` or `EMAIL`; without it, `user@host`."""


def system_author() -> Author:
    """`user@host`, for a local forge where nobody said who commits (there is no token
    owner, and a made-up address would read badly in the repository's history)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container uid
        user = f"uid{os.getuid()}"
    return Author(user, f"{user}@{socket.gethostname() or 'localhost'}")
