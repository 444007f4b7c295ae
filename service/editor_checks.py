"""The project check of a person's edit (the web editor's draft, a settings form's change),
as the pages ask it while typing and as a commit from them must pass it, and the names
the editor completes. Every check reads the commit through `checks.files_at`, so a
keystroke's check costs no forge request once the commit was read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from client.check import CheckResult, Finding
from client.check.project import load_project
from client.check_gate import judge
from providers.errors import InvalidRequest
from service import checks
from service.deps import ProjectContext

SHOWN = 5
"""Findings a refusal's message names (the page lists them all)."""


@dataclass(frozen=True)
class EditCheck:
    """The check of the project once an edit lands on its commit."""

    result: CheckResult
    """The project with the edit."""
    added: tuple[Finding, ...]
    """The errors the edit adds to those its commit already has."""
    edited: str | None
    """The edited file, project-relative (None when it is outside the project folder)."""

    @property
    def refused(self) -> bool:
        """Whether a commit of the edit is refused."""
        return bool(self.added)

    def as_dict(self) -> dict[str, Any]:
        """JSON for the editor: the findings (each marked `here` when it is in the edited
        file and `new` when the edit adds it) and whether a commit would be refused."""
        added = set(self.added)

        def shown(finding: Finding) -> dict[str, Any]:
            return {
                **finding.as_dict(),
                "here": finding.file == self.edited,
                "new": finding in added,
            }

        return {
            "ok": self.result.ok,
            "refused": self.refused,
            "errors": [shown(f) for f in self.result.errors],
            "warnings": [shown(f) for f in self.result.warnings],
        }


def project_relative(ctx: ProjectContext, path: str) -> str | None:
    """A repository path inside the project folder, relative to it (None outside it)."""
    folder = ctx.config.project_path.strip("/")
    if not folder:
        return path
    return path[len(folder) + 1 :] if path.startswith(f"{folder}/") else None


def check_edit(ctx: ProjectContext, sha: str, path: str, data: bytes) -> EditCheck:
    """The check of the project at commit `sha` with the repository file `path` holding
    `data` (a file outside the project folder, or one the project does not load, leaves
    the project's own result).

    A commit from the pages follows the gate of `commit` and the runner
    (`client.check_gate`): an edit is refused when it adds an error to those the project
    already has at its commit, never for an error that was there before, so a project
    that already fails can still be fixed from the editor and its settings forms one
    change at a time. Warnings never refuse a commit."""
    edited = project_relative(ctx, path)
    result = checks.check_draft(ctx, sha, {edited: data} if edited is not None else {})
    verdict = judge(result, lambda: checks.check_at(ctx, sha))
    return EditCheck(result, verdict.new_errors, edited)


class CheckRefused(InvalidRequest):
    """A commit from the pages refused: the edit adds errors to the project's check."""

    def __init__(self, check: EditCheck) -> None:
        self.check = check
        count = len(check.added)
        listed = "; ".join(f"{f.location()} {f.rule}: {f.reason}" for f in check.added[:SHOWN])
        more = f" (and {count - SHOWN} more)" if count > SHOWN else ""
        super().__init__(
            f"Nothing was committed: the change adds {count} "
            f"{'error' if count == 1 else 'errors'} to the project's check: {listed}{more}",
            "Fix them and commit again; your draft is kept",
        )


def refuse_if_worse(ctx: ProjectContext, sha: str, path: str, data: bytes) -> None:
    """Raise `CheckRefused` when committing `data` to `path` on commit `sha` adds errors
    (the rule is `check_edit`'s)."""
    check = check_edit(ctx, sha, path, data)
    if check.refused:
        raise CheckRefused(check)


def names(ctx: ProjectContext, sha: str) -> dict[str, list[str]]:
    """The names the project defines at commit `sha`, in every file it loads (plugins,
    jobs, schedules, environments): what the editor completes."""
    project = load_project(checks.files_at(ctx, sha))
    found: dict[str, list[str]] = {
        "plugins": list(dict.fromkeys(p.name for p in project.plugins() if p.name))
    }
    for kind in ("jobs", "schedules", "environments"):
        found[kind] = list(dict.fromkeys(e.name for e in project.entries(kind) if e.name))
    return found
