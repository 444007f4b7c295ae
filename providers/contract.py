"""The provider contract: one Protocol and the frozen dataclasses that cross it.

Callers type against `Forge`; the adapters implement it by inheriting
`providers.base.ForgeBase`, whose final methods hold the policy they share. No SDK object
crosses this boundary. Paths are repository-relative POSIX strings, SHAs are
40-hex commit or blob ids, and file contents are bytes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable


class FileMode(enum.IntEnum):
    """The three file modes a git tree holds for files (directories are implied)."""

    REGULAR = 0o100644
    EXECUTABLE = 0o100755
    SYMLINK = 0o120000

    @property
    def git(self) -> str:
        """The mode as git writes it in trees and APIs: '100644', '100755', '120000'."""
        return f"{self.value:o}"

    @classmethod
    def parse(cls, mode: int | str) -> FileMode:
        """Read a git mode from an int or octal string; unknown modes (submodules) fail."""
        value = int(mode, 8) if isinstance(mode, str) else mode
        if value == 0o100664:  # legacy group-writable blobs still exist in old repositories
            return cls.REGULAR
        return cls(value)


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can do; typed flags, never strings."""

    symlinks: bool
    """Commits can create or change symlinks."""
    executable_bit: bool
    """Commits can set and clear the execute bit."""
    verified_commits: bool
    """Commits are signed by the forge (GitHub GraphQL)."""
    change_requests: bool
    """Pull or merge requests can be opened."""


@dataclass(frozen=True)
class RepositoryInfo:
    """A repository's identity and defaults."""

    default_branch: str
    """The branch the forge treats as default (may not exist yet in an empty repository)."""
    web_url: str
    """Where a person can look at the repository."""
    empty: bool
    """True when the repository has no commits at all."""
    protected_branches: tuple[str, ...] | None = None
    """Branch names or globs the forge protects, when the token may read them."""
    can_push: bool | None = None
    """Whether the token may push to the repository at all (None when the forge does not
    say); a branch's own `can_push` also weighs its protection."""
    can_admin: bool | None = None
    """Whether the token may administer the repository (GitHub `permissions.admin`, GitLab
    Maintainer or above, a local repository's owner); None when the forge does not say."""


@dataclass(frozen=True)
class Branch:
    """A branch and its head commit."""

    name: str
    """The short name, without `refs/heads/`."""
    head: str
    """The SHA of the commit the branch points at."""
    protected: bool = False
    """Whether the forge reports the branch as protected."""
    can_push: bool | None = None
    """Whether this token may push to the branch, when the forge tells (None: unknown)."""


@dataclass(frozen=True)
class TreeEntry:
    """One file of a commit's tree."""

    path: str
    """Repository-relative POSIX path."""
    mode: FileMode
    """Regular, executable or symlink."""
    sha: str
    """The git blob SHA of the contents."""
    size: int
    """Size of the contents in bytes (for a symlink, of its target)."""


@dataclass(frozen=True)
class ArchiveEntry:
    """One file streamed out of a snapshot. Read `stream` before advancing the snapshot's
    iterator: it is a window on the download, never the whole file in memory."""

    path: str
    """Repository-relative POSIX path, already checked for safety."""
    mode: FileMode
    """Regular, executable or symlink."""
    size: int
    """Bytes the stream holds (for a symlink, its target's length)."""
    stream: BinaryIO
    """The file's bytes, or the symlink's target."""

    def read(self) -> bytes:
        """All of the (remaining) bytes; for small files and link targets."""
        return self.stream.read()


@dataclass(frozen=True)
class Snapshot:
    """A commit's tree, streamed. Iterate `entries` once, inside the `archive()` context."""

    sha: str
    """The commit the snapshot was taken at (pinned even when fetched by branch name)."""
    entries: Iterator[ArchiveEntry]
    """The files, in archive order."""


@dataclass(frozen=True)
class FileChange:
    """One file's part of a change set: write `content` at `path`, or delete it."""

    path: str
    """Repository-relative POSIX path."""
    content: bytes | None
    """New contents (a symlink's target for SYMLINK), or None to delete the file."""
    mode: FileMode = FileMode.REGULAR
    """Mode to write; ignored for deletes."""
    base_mode: FileMode | None = None
    """Mode at the base commit, or None when the file is new there. Adapters use it to
    tell creates from updates and to detect mode-only changes."""

    @property
    def is_delete(self) -> bool:
        """True when this change removes the file."""
        return self.content is None

    @property
    def mode_changed(self) -> bool:
        """True when an existing file's mode changes (including to or from a symlink)."""
        return not self.is_delete and self.base_mode is not None and self.base_mode != self.mode

    @classmethod
    def put(
        cls,
        path: str,
        content: bytes,
        mode: FileMode = FileMode.REGULAR,
        base_mode: FileMode | None = None,
    ) -> FileChange:
        """Write a file (create when `base_mode` is None, else update)."""
        return cls(path, content, mode, base_mode)

    @classmethod
    def delete(cls, path: str, base_mode: FileMode = FileMode.REGULAR) -> FileChange:
        """Remove a file that exists at the base commit."""
        return cls(path, None, base_mode, base_mode)


@dataclass(frozen=True)
class Author:
    """A commit author; when omitted, the forge uses the token's owner."""

    name: str
    """Display name."""
    email: str
    """E-mail address."""


@dataclass(frozen=True)
class CommitResult:
    """What a successful commit produced."""

    sha: str
    """The new head of the branch."""
    parent: str | None
    """The commit it was made on top of: `expected_head`, or a newer head after a rebase."""
    rebased: bool = False
    """True when the branch had moved and the change set landed on the newer head."""


@dataclass(frozen=True)
class Person:
    """A commit's author or committer."""

    name: str
    email: str
    time: int
    """Seconds since the epoch."""
    offset: int | None
    """The timezone, minutes east of UTC, when the forge says (GitHub gives UTC only)."""


@dataclass(frozen=True)
class CommitMeta:
    """What a forge tells about one commit: enough to show history, and to rebuild the
    exact commit object for a local `.git`."""

    sha: str
    parents: tuple[str, ...]
    author: Person
    committer: Person
    message: str
    tree: str | None = None
    """The root tree's id, when the forge gives it."""
    signature: str | None = None
    """The `gpgsig` header's value of a signed commit, when the forge gives it."""
    raw: bytes | None = None
    """The commit object itself, where the forge has it (a local repository)."""


@dataclass(frozen=True)
class ChangeRequest:
    """A pull request (GitHub) or merge request (GitLab)."""

    number: int
    """The PR number or MR iid."""
    url: str
    """Where a person reviews it."""
    source: str
    """The branch with the changes."""
    target: str
    """The branch to merge into."""
    created: bool = field(default=False)
    """False when an open one already existed and was returned instead."""
    merged: bool = False
    """True where the forge has no change requests (a local repository) and the promotion
    was applied at once, as a fast-forward or a merge commit."""
    detail: str = ""
    """What a direct promotion did, in words."""


@runtime_checkable
class Forge(Protocol):
    """A repository on a forge, reached through its API. All methods raise `ProviderError`s."""

    capabilities: Capabilities

    def repository(self) -> RepositoryInfo:
        """The default branch, web URL and, when readable, branch protections."""
        ...

    def branches(self) -> list[Branch]:
        """Every branch, with its head and protected flag."""
        ...

    def branch(self, name: str) -> Branch:
        """One branch; `NotFound` when it does not exist."""
        ...

    def create_branch(self, name: str, from_sha: str) -> Branch:
        """Create a branch at a commit. `AlreadyExists` if taken; `InvalidRequest` if the
        name clashes with an existing branch used as a folder (`a` vs `a/b`)."""
        ...

    def archive(self, ref: str, path: str = "") -> AbstractContextManager[Snapshot]:
        """Stream the tree at a commit SHA or branch name, in one request where possible.
        A `path` keeps only that folder (entries keep their full repository paths)."""
        ...

    def read_file(self, sha: str, path: str) -> bytes:
        """The contents of one file at a commit."""
        ...

    def list_tree(self, sha: str) -> list[TreeEntry]:
        """Every file of a commit's tree, recursively."""
        ...

    def changed_paths(self, base_sha: str, head_sha: str) -> frozenset[str]:
        """Paths that differ between two commits (both sides of a rename)."""
        ...

    def commit(
        self,
        branch: str,
        expected_head: str | None,
        changes: Sequence[FileChange],
        message: str,
        author: Author | None = None,
    ) -> CommitResult:
        """Apply a change set atomically as one commit, or nothing.

        When the branch moved since `expected_head` but none of the change set's paths
        changed, the commit lands on the current head. Otherwise `Conflict(paths)`. The
        branch is never force-moved. `expected_head=None` makes the first commit of an
        empty repository (or of a missing branch)."""
        ...

    def commit_meta(self, sha: str) -> CommitMeta:
        """Author, committer, parents and message of one commit."""
        ...

    def history(self, sha: str, limit: int) -> list[CommitMeta]:
        """Up to `limit` commits reachable from `sha`, newest first (as `git log` lists)."""
        ...

    def ahead_behind(self, base: str, head: str) -> tuple[int, int]:
        """Commits `head` has that `base` lacks, and the other way round."""
        ...

    def open_change_request(self, source: str, target: str, title: str, body: str) -> ChangeRequest:
        """Open a PR/MR from `source` into `target`, or return the open one."""
        ...

    def close(self) -> None:
        """Release pooled connections."""
        ...


@runtime_checkable
class WorkspaceReporter(Protocol):
    """A forge that collects runners' workspace states (the meltano-forge service)."""

    def report_workspace(
        self, workspace_id: str, branch: str, base_sha: str, dirty: Sequence[str], diff: str = ""
    ) -> None:
        """Record a runner's branch, base commit, uncommitted files and their patch."""
        ...


@runtime_checkable
class PromotionService(Protocol):
    """A forge that checks a promotion itself (the meltano-forge service): it refuses a
    source branch whose check makes the target fail, unless an admin's token says to
    promote it anyway."""

    def open_promotion(
        self, source: str, target: str, title: str, body: str, *, override_check: bool
    ) -> ChangeRequest:
        """Open (or reuse) a PR/MR, or promote at once, as `open_change_request` does."""
        ...


class StatusState(enum.StrEnum):
    """A commit status's state, as GitHub and GitLab both accept it (GitLab calls
    `failure` `failed`; its adapter translates)."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


@dataclass(frozen=True)
class CommitStatus:
    """One commit status, as a check reports it (`meltano-forge/check`)."""

    state: StatusState
    context: str
    """GitHub's `context`, GitLab's `name`."""
    description: str
    """One short line (GitHub keeps 140 characters; adapters cut it)."""
    target_url: str | None = None
    """Where a person reads the findings."""


@dataclass(frozen=True)
class ChangeRequestHead:
    """A pull request or merge request as it stands now (`pulls/get`, `merge_requests/:iid`)."""

    number: int
    """PR number or MR iid."""
    head_sha: str
    source: str
    target: str
    open: bool
    """False once it is closed or merged."""
    url: str = ""


@runtime_checkable
class CheckReporter(Protocol):
    """A forge that takes commit statuses and review comments (GitHub, GitLab; not a local
    repository). Every method raises `ProviderError`s: a token without the permission gets
    `PermissionDenied` saying which one it needs."""

    def set_commit_status(self, sha: str, status: CommitStatus) -> None:
        """Create a status on a commit (a newer one with the same context replaces it)."""
        ...

    def commit_statuses(self, sha: str) -> list[CommitStatus]:
        """The statuses on a commit, newest first (for reading back what was reported)."""
        ...

    def change_request_head(self, number: int) -> ChangeRequestHead:
        """A PR/MR's head commit and branches now; `NotFound` when it does not exist."""
        ...

    def upsert_comment(self, number: int, marker: str, body: str, known_id: int | None) -> int:
        """Write the one comment on PR/MR `number` that carries `marker` (a hidden HTML
        comment in `body`) and that this token's own user wrote: edit `known_id` if it is
        still such a comment, else the first such comment, else create one (anyone may
        quote the marker; only our own comment is ours). Returns the comment's id."""
        ...
