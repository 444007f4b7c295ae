"""The secret guard: credentials are never committed unless explicitly allowed.

One guard for every way a file or a value reaches the repository: the runner's and the
CLI's commits (workspace changes), and the service's API commits, editor and forms (a path
and its bytes, or one setting's value). A file is refused by its name (case-insensitive
globs: `.env`, `prod.env`, `id_rsa`, `*credentials*.json`, ...) or by what it holds: the
token formats GitHub, GitLab, AWS, Google Cloud and Slack publish, private key blocks, and
passwords inside URLs. Only an explicit allow list lets one through.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from providers.errors import UnsafeInput

if TYPE_CHECKING:  # the check uses the guard's formats without loading the workspace
    from client.workspace import LocalChange

DEFAULT_GLOBS = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    ".netrc",
    ".pgpass",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.ppk",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*credentials*.json",
)
"""File names that hold secrets by convention (matched without regard to case)."""
SCANNED_BYTES = 1_000_000
"""How much of a file the content check reads: secrets sit in small files."""

_KINDS = {
    "pem": "a private key",
    "github": "a GitHub token",
    "gitlab": "a GitLab token",
    "aws_id": "an AWS access key id",
    "aws_secret": "an AWS secret access key",
    "google_key": "a Google API key",
    "slack": "a Slack token",
    "slack_hook": "a Slack webhook URL",
    "url_password": "a password inside a URL",
}
_CONTENT = re.compile(
    rb"(?P<pem>-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)"
    rb"|(?P<github>\bgh[pousr]_[A-Za-z0-9]{36,251}\b|\bgithub_pat_[A-Za-z0-9_]{50,251}\b)"
    rb"|(?P<gitlab>\bgl(?:pat|oas|dt|rt|rtr|cbt|ptt|ft|imt|agent|soat|ffct|wt)-[A-Za-z0-9_\-]{20,}"
    rb"|\bGR1348941[A-Za-z0-9_\-]{20,})"
    rb"|(?P<aws_id>\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b)"
    rb"|(?P<aws_secret>(?i:secret_?access_?key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}"
    rb"(?![A-Za-z0-9/+=]))"
    rb"|(?P<google_key>\bAIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-]))"
    rb"|(?P<slack>\bxox[abposre]-[A-Za-z0-9-]{10,}|\bxapp-\d-[A-Za-z0-9-]{10,})"
    rb"|(?P<slack_hook>hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{8,})"
    rb"|(?P<url_password>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:'\"<>]+:(?P<password>[^\s/@'\"<>]+)@"
    rb"[^\s/@'\"<>]+)"
)
_PLACEHOLDER = re.compile(rb"\$|\{\{|<|%\(|\*+$|x+$", re.I)
"""How a URL's password is written when it is not one: `${PASS}`, `{{ var }}`, `****`."""
_SERVICE_ACCOUNT = re.compile(rb'"type"\s*:\s*"service_account"')
_PRIVATE_KEY_FIELD = re.compile(rb'"private_key"\s*:')

SECRET_SETTING_NAMES = re.compile(
    r"password|passwd|passphrase|secret|token|credential|private_key|client_key|api_?key"
    r"|connection_?string|conn_?str|sqlalchemy_url|database_url|authorization|bearer"
    r"|(^|_)(pwd|pw|pass|key|dsn|auth)$",
    re.I,
)
"""Setting names treated as secrets when neither meltano.yml nor a lock file says."""


class SecretRefused(UnsafeInput):
    """A file or value the guard keeps out of the repository (the service's 422)."""


def secret_in(data: bytes) -> str | None:
    """What kind of credential `data` seems to hold ('a GitHub token'), or None."""
    head = data[:SCANNED_BYTES]
    for match in _CONTENT.finditer(head):
        kind = match.lastgroup if match.lastgroup != "password" else "url_password"
        if kind == "url_password" and _PLACEHOLDER.match(match.group("password")):
            continue
        return _KINDS[kind or "pem"]
    if _SERVICE_ACCOUNT.search(head) and _PRIVATE_KEY_FIELD.search(head):
        return "a Google Cloud service-account key"
    return None


def is_secret_setting(name: str) -> bool:
    """Whether a setting's name says it holds a secret (`password`, `db_pass`, `pw`)."""
    return bool(SECRET_SETTING_NAMES.search(name))


def _matches(path: str, globs: Iterable[str]) -> bool:
    lowered = path.lower()
    name = lowered.rsplit("/", 1)[-1]
    return any(
        fnmatch.fnmatchcase(name, g.lower()) or fnmatch.fnmatchcase(lowered, g.lower())
        for g in globs
    )


@dataclass(frozen=True)
class SecretGuard:
    """The default globs plus `extra_globs`; `allowed` globs always pass (the explicit
    allow list: `MELTANO_FORGE_ALLOW_SECRETS`, for the client and the service alike)."""

    extra_globs: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    globs: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "globs", (*DEFAULT_GLOBS, *self.extra_globs))

    def allows(self, path: str) -> bool:
        """Whether the allow list names `path`."""
        return _matches(path, self.allowed)

    def named_secret(self, path: str) -> bool:
        """Whether `path`'s name marks it as a secrets file (and it is not allowed)."""
        return not self.allows(path) and _matches(path, self.globs)

    def reason(self, path: str, data: bytes | None) -> str | None:
        """Why `path` (with `data`, when it is written) must stay out, or None."""
        if self.allows(path):
            return None
        if _matches(path, self.globs):
            return "its name marks it as a secrets file"
        kind = secret_in(data) if data is not None else None
        return f"it holds what looks like {kind}" if kind else None

    def check(self, path: str, data: bytes | None) -> None:
        """Raise `SecretRefused` naming the file and why."""
        why = self.reason(path, data)
        if why is not None:
            msg = f"{path} was not committed: {why}"
            raise SecretRefused(
                msg,
                "Keep secrets in .env or an environment variable, never in the repository "
                "(an administrator can allow the path with MELTANO_FORGE_ALLOW_SECRETS)",
            )


@dataclass(frozen=True)
class HeldBack:
    """A change the guard kept out of the commit, and why."""

    path: str
    reason: str


def screen(
    root: Path,
    changes: Iterable[LocalChange],
    extra_globs: Iterable[str] = (),
    allowed: Iterable[str] = (),
) -> tuple[list[LocalChange], list[HeldBack]]:
    """Split a workspace's changes into those safe to commit and those held back."""
    from client.workspace import read_local

    guard = SecretGuard(tuple(extra_globs), tuple(allowed))
    keep, held = [], []
    for change in changes:
        data = None if change.kind == "deleted" else read_local(root, change.path)[0]
        why = guard.reason(change.path, data)
        if why is None:
            keep.append(change)
        else:
            held.append(HeldBack(change.path, why))
    return keep, held
