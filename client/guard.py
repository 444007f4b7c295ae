"""The secret guard: credentials are never committed unless explicitly allowed."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from client.workspace import LocalChange, read_local

DEFAULT_GLOBS = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_ed25519*",
    "*credentials*.json",
)
_CONTENT = re.compile(
    rb"-----BEGIN (?:RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----"
    rb"|\bgh[pousr]_[A-Za-z0-9]{36}\b|\bglpat-[A-Za-z0-9_\-]{20}\b|\bAKIA[0-9A-Z]{16}\b"
    rb"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
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
    """Split changes into those safe to commit and those held back."""
    globs = (*DEFAULT_GLOBS, *extra_globs)
    allow = tuple(allowed)
    keep, held = [], []
    for change in changes:
        name = change.path.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatchcase(change.path, a) or fnmatch.fnmatchcase(name, a) for a in allow):
            keep.append(change)
            continue
        if any(fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(change.path, g) for g in globs):
            held.append(HeldBack(change.path, "its name marks it as a secrets file"))
            continue
        if change.kind != "deleted":
            data, _ = read_local(root, change.path)
            if _CONTENT.search(data[:1_000_000]):
                held.append(HeldBack(change.path, "it looks like it holds a private key or token"))
                continue
        keep.append(change)
    return keep, held
