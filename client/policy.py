"""Branch policy: which branch to work on, which are read-only, and creating missing ones."""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass

from providers.contract import Branch, Forge
from providers.errors import AlreadyExists, NotFound
from providers.names import branch_clash, branch_clash_error, check_branch_name

DEFAULT_PROTECTED = ("main", "master")
"""The seed's read-only branches, when nobody configured others."""


class ReadOnly(enum.Enum):
    """Why a branch may not be written."""

    PROTECTED = "protected"
    """It matches the configured protected globs."""
    FORCED = "forced"
    """Read-only mode was forced by the settings."""
    FORGE = "forge"
    """The forge itself protects the branch from this token."""
    NO_PUSH = "no-push"
    """The token may read the repository but not push to it."""
    ROLE = "role"
    """The caller's role (a service token with the read role) may look, not write."""


class ReadOnlyBranch(Exception):
    """A write was attempted on a read-only branch. `reason` and `instruction` are worded
    for the command line; the service words its answer from `branch`, `why`, `working`."""

    def __init__(self, branch: str, working: str, why: ReadOnly, detail: str = "") -> None:
        self.branch, self.working, self.why, self.detail = branch, working, why, detail
        elsewhere = (
            f"Work on '{working}' instead (`meltano-forge checkout {working} --carry`, or set "
            f"MELTANO_FORGE_BRANCH={working}) and promote it with `meltano-forge promote`"
        )
        if why is ReadOnly.FORCED:
            self.reason = "The workspace is read-only because MELTANO_FORGE_READ_ONLY is true"
            self.instruction = "Unset MELTANO_FORGE_READ_ONLY (or set it to false) to commit"
        elif why is ReadOnly.PROTECTED:
            self.reason = (
                f"The branch '{branch}' is read-only: it matches MELTANO_FORGE_PROTECTED_BRANCHES"
            )
            self.instruction = (
                elsewhere
                if branch != working
                else "Remove it from MELTANO_FORGE_PROTECTED_BRANCHES, or set "
                "MELTANO_FORGE_WORKING_BRANCH to a branch that is not protected"
            )
        elif why is ReadOnly.FORGE:
            self.reason = f"The forge protects the branch '{branch}' from this token"
            self.instruction = (
                elsewhere
                if branch != working
                else (
                    "Ask a maintainer to allow pushes to it, or set MELTANO_FORGE_WORKING_BRANCH "
                    "to another branch"
                )
            )
        elif why is ReadOnly.ROLE:
            self.reason = "Your token has the read role: it may look, not commit"
            self.instruction = "Use a token with the write role"
        else:
            self.reason = f"The token may read the repository but not push to '{branch}'"
            self.instruction = (
                "Use a token that may push: GitHub contents:write, GitLab the Developer role "
                "and api scope, or a service token with the write role"
            )
        if detail:
            self.reason += f" ({detail})"
        super().__init__(f"{self.reason}. {self.instruction}.")


@dataclass(frozen=True)
class BranchPolicy:
    """The seed's defaults: protected `main`/`master`, a `development` working branch and
    optional personal branches `{working}-{user}`."""

    working: str = "development"
    protected: tuple[str, ...] = DEFAULT_PROTECTED
    read_only: bool = False
    user: str | None = None
    template: str = "{working}-{user}"

    def target(self, requested: str | None) -> str:
        """The branch to use: explicit, personal, or the working branch."""
        if requested:
            return check_branch_name(requested)
        if self.user:
            return check_branch_name(self.template.format(working=self.working, user=self.user))
        return check_branch_name(self.working)

    def read_only_reason(self, branch: str) -> ReadOnly | None:
        """Why the settings make `branch` read-only (forced mode, protected globs), if they do."""
        if self.read_only:
            return ReadOnly.FORCED
        if any(fnmatch.fnmatchcase(branch, g) for g in self.protected):
            return ReadOnly.PROTECTED
        return None

    def write_refusal(
        self, branch: str, facts: Branch | None = None, *, may_write: bool = True
    ) -> ReadOnly | None:
        """The one read-only rule, for the runner, the API, the project page and the editor
        alike: the settings first, then the forge's facts about the branch (protected and
        this token not allowed through, or no push at all), then the caller's role.

        A forge-protected branch that this token may push to (`can_push` True) is
        writable: the forge's own rule lets it through, and the runner has always written
        there. `facts` is None for a branch that does not exist yet."""
        why = self.read_only_reason(branch)
        if why is None and facts is not None:
            if facts.protected and facts.can_push is not True:
                why = ReadOnly.FORGE
            elif facts.can_push is False:
                why = ReadOnly.NO_PUSH
        if why is None and not may_write:
            why = ReadOnly.ROLE
        return why

    def is_read_only(self, branch: str) -> bool:
        """Protected globs and forced read-only mode."""
        return self.read_only_reason(branch) is not None

    def check_writable(
        self, branch: str, facts: Branch | None = None, *, may_write: bool = True
    ) -> None:
        """Raise `ReadOnlyBranch` when the rule makes `branch` read-only."""
        why = self.write_refusal(branch, facts, may_write=may_write)
        if why is not None:
            raise ReadOnlyBranch(branch, self.working, why)

    def source(self, forge: Forge, branch: str) -> Branch:
        """The branch a missing `branch` would start from: personal branches from the
        working branch when it exists, everything else from the default branch. Refuses
        names git cannot hold beside the existing branches."""
        existing = forge.branches()
        clash = branch_clash(branch, [b.name for b in existing])
        if clash:
            raise branch_clash_error(branch, clash)
        by_name = {b.name: b for b in existing}
        source = by_name.get(self.working) if branch != self.working else None
        if source is None:
            default = forge.repository().default_branch
            source = by_name.get(default)
            if source is None:
                msg = f"The repository has no '{default}' branch to start '{branch}' from"
                raise NotFound(msg, "Run `meltano-forge init` first")
        return source

    def ensure(self, forge: Forge, branch: str) -> tuple[Branch, bool]:
        """The branch, created from `source` when missing. Returns (branch, created)."""
        try:
            return forge.branch(branch), False
        except NotFound:
            pass
        source = self.source(forge, branch)
        try:
            return forge.create_branch(branch, source.head), True
        except AlreadyExists:
            return forge.branch(branch), False
