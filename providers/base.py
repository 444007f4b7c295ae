"""The policy every adapter shares, written once: final template methods over the small
primitives each forge implements (the shape of meltano's `core/state_store/base.py`).

`commit` checks the branch name and the change set, starts a missing branch, and decides
the race with a moving head (rebase over disjoint changes, `Conflict` on overlapping
ones); `create_branch` explains names that clash with a branch used as a folder;
`open_change_request` finds the open one before opening another. Adapters only say how
their forge makes one attempt. `contract.Forge` stays the public face: the client, the
service and the tests type against the Protocol (it holds no code, so any object with
those methods is a forge); a base class is how adapters share code, which callers need
not know.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, final

from providers import changeset
from providers.config import ForgeConfig
from providers.contract import (
    Author,
    Branch,
    Capabilities,
    ChangeRequest,
    CommitResult,
    FileChange,
    Snapshot,
    TreeEntry,
)
from providers.errors import NotFound, Refused, Unavailable
from providers.names import BranchClash, branch_clash, branch_clash_error, check_branch_name, is_sha
from providers.redaction import protect_logs
from providers.retry import LostRace, Pause, Retrier
from providers.tarball import ChunkReader, open_tarball


@dataclass(frozen=True)
class Draft:
    """What one commit is to hold, as the caller asked for it."""

    branch: str
    changes: Sequence[FileChange]
    message: str
    author: Author | None


@dataclass(frozen=True)
class Landed:
    """The commit is on the branch."""

    sha: str
    """The branch's new head."""
    parent: str | None
    """The commit it was made on."""
    rebased: bool | None = None
    """Whether it landed on a newer head than the caller's, when the forge alone knows
    (our own service); None lets `commit` tell from `parent`."""


@dataclass(frozen=True)
class Moved:
    """The branch was not where the attempt expected it: nothing was written."""

    tried: str | None
    """The head the attempt was made on (None when it tried to create the branch)."""
    head: str
    """Where the branch is now."""


@dataclass(frozen=True)
class Missing:
    """The branch does not exist (any more): nothing was written."""


Attempt = Landed | Moved | Missing


class ForgeBase(ABC):
    """What every adapter inherits; see the module docstring for what the templates hold."""

    capabilities: Capabilities
    config: ForgeConfig
    race_attempts: ClassVar[int] = 40
    """Compare-and-swaps lost to other writers before giving up; each re-checks conflicts."""
    race_pause: ClassVar[Pause] = Pause(0.05, 2.0)
    """The back-off between them."""

    def __init__(self, config: ForgeConfig) -> None:
        self.config = config
        self._retrier = Retrier(config.retry)
        protect_logs(self._token())
        self._token_set = config.token is not None

    def _token(self) -> str | None:
        """The token in clear, for the adapter's HTTP client only. It was registered with
        the redaction point when the adapter was made, before any request could carry it."""
        return self.config.token.get_secret_value() if self.config.token else None

    # ---- the templates ---------------------------------------------------------------
    @final
    def commit(
        self,
        branch: str,
        expected_head: str | None,
        changes: Sequence[FileChange],
        message: str,
        author: Author | None = None,
    ) -> CommitResult:
        """Apply a change set atomically as one commit, or nothing (`contract.Forge.commit`).

        A missing branch starts at `expected_head`, else at the default branch's head (a
        first commit only in an empty repository). When the branch moved, the change set
        lands on the new head unless one of its paths changed since the base; with no
        `expected_head`, the base is the head the first attempt found."""
        check_branch_name(branch)
        changeset.validate(changes, self.config.archive_limits)
        draft = Draft(branch, changes, message, author)
        base, head = expected_head, expected_head

        def attempt() -> CommitResult:
            nonlocal base, head
            outcome = self._commit_once(draft, head)
            if isinstance(outcome, Missing):
                start = expected_head if expected_head is not None else self._start_of(branch)
                outcome = self._start_branch(draft, start)
            if isinstance(outcome, Landed):
                rebased = outcome.rebased
                if rebased is None:
                    rebased = base is not None and outcome.parent != base
                return CommitResult(outcome.sha, outcome.parent, rebased=rebased)
            if isinstance(outcome, Moved):
                base = base if base is not None else outcome.tried
                if base is not None and outcome.head != base:
                    changeset.rebase_or_conflict(changes, base, outcome.head, self._changed_since)
                head = outcome.head
            raise LostRace

        def gave_up() -> Unavailable:
            msg = f"The branch '{branch}' kept moving while committing"
            return Unavailable(msg, "Try again in a moment")

        return self._retrier.contend(
            attempt, tries=self.race_attempts, pause=self.race_pause, gave_up=gave_up
        )

    @final
    def create_branch(self, name: str, from_sha: str) -> Branch:
        """Create a branch at a commit (`contract.Forge.create_branch`); a refusal caused by
        a branch used as a folder (`a` beside `a/b`) is explained, whatever the forge said."""
        check_branch_name(name)
        try:
            return self._create_branch_once(name, from_sha)
        except BranchClash:
            raise
        except Refused as exc:
            clash = branch_clash(name, [b.name for b in self.branches()])
            if clash:
                raise branch_clash_error(name, clash) from exc
            raise

    @final
    def open_change_request(self, source: str, target: str, title: str, body: str) -> ChangeRequest:
        """The open change request from `source` into `target`, or a new one; when the
        forge refuses to open one, it is looked for again (another caller may have just
        opened it) before the refusal is raised."""
        check_branch_name(source)
        check_branch_name(target)
        found = self._find_change_request(source, target)
        if found:
            return found
        try:
            return self._open_change_request_once(source, target, title, body)
        except Refused:
            again = self._find_change_request(source, target)
            if again:
                return again
            raise

    # ---- shared steps ----------------------------------------------------------------
    @contextmanager
    def _snapshot(self, ref: str, body: Iterable[bytes], folder: str = "") -> Iterator[Snapshot]:
        """A forge's tar.gz download as a `Snapshot`, read under the configured limits: the
        commit is the one its pax header names, which must be `ref` when `ref` is a SHA."""
        with open_tarball(
            ChunkReader(body),
            expected_sha=ref if is_sha(ref) else None,
            limits=self.config.archive_limits,
            folder=folder,
        ) as (sha, entries):
            yield Snapshot(sha, entries)

    def _start_of(self, branch: str) -> str | None:
        """Where a missing `branch` starts when no base is given: the head of the default
        branch, or None in an empty repository (its first commit has no parent). Anything
        else is refused rather than made an orphan branch."""
        default = self._default_branch()
        try:
            return self.branch(default).head
        except NotFound:
            if not self.branches():
                return None
            msg = (
                f"The branch '{branch}' does not exist and there is no '{default}' to start it from"
            )
            raise NotFound(msg, "Give the commit to start it from (a base SHA)") from None

    def _changed_since(self, base_sha: str | None, head_sha: str) -> frozenset[str]:
        """Paths changed from `base_sha` to `head_sha`; with no base, every path at the head."""
        if base_sha is None:
            return frozenset(e.path for e in self.list_tree(head_sha))
        return self.changed_paths(base_sha, head_sha)

    # ---- what the templates call -----------------------------------------------------
    @abstractmethod
    def branch(self, name: str) -> Branch:
        """One branch; `NotFound` when it does not exist."""

    @abstractmethod
    def branches(self) -> list[Branch]:
        """Every branch."""

    @abstractmethod
    def list_tree(self, sha: str) -> list[TreeEntry]:
        """Every file of a commit's tree."""

    @abstractmethod
    def changed_paths(self, base_sha: str, head_sha: str) -> frozenset[str]:
        """Paths that differ between two commits."""

    @abstractmethod
    def _default_branch(self) -> str:
        """The branch a missing branch starts from."""

    @abstractmethod
    def _commit_once(self, draft: Draft, head: str | None) -> Attempt:
        """One try at committing `draft` on `head` of its existing branch (None: on its
        head, whatever it is). A forge that judges overlaps itself may raise `Conflict`."""

    @abstractmethod
    def _start_branch(self, draft: Draft, start: str | None) -> Attempt:
        """Create the draft's missing branch with its commit on `start` (None: the first
        commit of an empty repository), so the branch appears with its commit or not at all."""

    @abstractmethod
    def _create_branch_once(self, name: str, from_sha: str) -> Branch:
        """Make the ref; `AlreadyExists` if taken, `Refused` if the forge refused it."""

    @abstractmethod
    def _find_change_request(self, source: str, target: str) -> ChangeRequest | None:
        """The open change request from `source` into `target`, if there is one."""

    @abstractmethod
    def _open_change_request_once(
        self, source: str, target: str, title: str, body: str
    ) -> ChangeRequest:
        """Open one; `Refused` when the forge would not."""
