"""What the setup screen remembers between its two steps, in memory and typed: the setups
checked against the forge and waiting to be saved, and the browsers that gave the setup
token. Both are forgotten after `PENDING_LIFE`, so an abandoned screen holds nothing."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr

PENDING_LIFE = 900.0
"""Seconds a checked setup (and a setup-token holder's cookie) stays usable."""


def _trimmed(text: object) -> object:
    """A field a person typed: spaces around it are not part of it."""
    return text.strip() if isinstance(text, str) else text


def _branch_or_development(text: object) -> object:
    return _trimmed(text) or "development"


def _ticked(value: object) -> bool:
    """A checkbox as browsers send it: "on" when ticked, absent otherwise."""
    return value is True or value == "on"


Trimmed = Annotated[str, BeforeValidator(_trimmed)]


class SetupValues(BaseModel):
    """A project as the setup screen was given it (the form, trimmed and defaulted)."""

    model_config = ConfigDict(frozen=True)

    name: Trimmed = ""
    provider: str = "github"
    repo: Trimmed = ""
    api_url: Trimmed = ""
    working_branch: Annotated[str, BeforeValidator(_branch_or_development)] = "development"
    protected_branches: Trimmed = "main,master"
    """Comma-separated branch globs, as typed."""
    initialize: Annotated[bool, BeforeValidator(_ticked)] = False
    """Run `meltano init` into an empty repository (and create a missing local one)."""


@dataclass(frozen=True)
class Pending:
    """A checked setup waiting to be saved: the forge token stays on the server."""

    token: SecretStr
    values: SetupValues
    created: float = field(default_factory=time.time)

    @property
    def expired(self) -> bool:
        """Older than `PENDING_LIFE`: the forge must be asked again."""
        return time.time() - self.created > PENDING_LIFE


class PendingSetups:
    """The setup screen's memory: checked setups by a random id, and the browsers that
    gave the setup token (their cookie's random id, and when). Safe across threads (the
    screen's work runs in a worker thread)."""

    def __init__(self) -> None:
        self._setups: dict[str, Pending] = {}
        self._holders: dict[str, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many setups wait to be saved."""
        with self._lock:
            return len(self._setups)

    def hold(self, pending: Pending) -> str:
        """Keep a checked setup (forgetting expired ones); the id its Save form carries."""
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._forget_expired()
            self._setups[key] = pending
        return key

    def take(self, key: str) -> Pending | None:
        """The setup behind `key`, removed (a Save uses it once), unless it expired."""
        with self._lock:
            pending = self._setups.pop(key, None)
        return None if pending is None or pending.expired else pending

    def put_back(self, key: str, pending: Pending) -> None:
        """A Save that failed before anything was registered may be tried again."""
        with self._lock:
            self._setups[key] = pending

    def add_holder(self) -> str:
        """A new holder id for a browser that just gave the setup token."""
        holder = secrets.token_urlsafe(24)
        with self._lock:
            self._holders[holder] = time.time()
        return holder

    def is_holder(self, holder: str) -> bool:
        """Whether `holder` gave the setup token less than `PENDING_LIFE` ago."""
        with self._lock:
            since = self._holders.get(holder)
        return since is not None and time.time() - since < PENDING_LIFE

    def forget_holders(self) -> None:
        """The setup token is spent: no browser holds it any more."""
        with self._lock:
            self._holders.clear()

    def _forget_expired(self) -> None:
        now = time.time()
        for key in [k for k, p in self._setups.items() if now - p.created > PENDING_LIFE]:
            del self._setups[key]
        for holder in [h for h, since in self._holders.items() if now - since > PENDING_LIFE]:
            del self._holders[holder]
