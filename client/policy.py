"""Branch policy: which branch to work on, which are read-only, and creating missing ones."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from providers.contract import Branch, Forge
from providers.errors import AlreadyExists, NotFound
from providers.names import branch_clash, branch_clash_error, check_branch_name


class ReadOnlyBranch(Exception):
    """A write was attempted on a protected or read-only branch."""

    def __init__(self, branch: str, working: str) -> None:
        self.branch = branch
        super().__init__(
            f"The branch '{branch}' is read-only. Work on '{working}' instead "
            f"(set MELTANO_FORGE_BRANCH={working}) and promote it with `meltano-forge promote`."
        )


@dataclass(frozen=True)
class BranchPolicy:
    """The seed's defaults: protected `main`/`master`, a `development` working branch and
    optional personal branches `{working}-{user}`."""

    working: str = "development"
    protected: tuple[str, ...] = ("main", "master")
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

    def is_read_only(self, branch: str) -> bool:
        """Protected globs and forced read-only mode."""
        return self.read_only or any(fnmatch.fnmatchcase(branch, g) for g in self.protected)

    def ensure(self, forge: Forge, branch: str) -> tuple[Branch, bool]:
        """The branch, created when missing: personal branches start from the working
        branch when it exists, everything else from the default branch. Returns
        (branch, created)."""
        try:
            return forge.branch(branch), False
        except NotFound:
            pass
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
        try:
            return forge.create_branch(branch, source.head), True
        except AlreadyExists:
            return forge.branch(branch), False
