"""The check of a promotion's source branch (SPEC §9), as the API, the compare page and a
runner's `promote` see it: the source's head checked, and judged against the target's by
the one gate rule (`client.check_gate`), so a branch that adds no error to the target may
go, and one that makes the target fail only with an administrator's explicit override."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from client.check import CheckResult, check_project
from client.check_gate import Verdict, judge
from providers.contract import ChangeRequest
from providers.errors import NotFound
from service import checks
from service.deps import ProjectContext


@dataclass(frozen=True)
class PromotionCheck:
    """The source branch's check, judged against the target."""

    source: str
    source_sha: str
    target: str
    target_sha: str | None
    """None while the target branch does not exist (it then holds nothing to break)."""
    verdict: Verdict

    @property
    def refused(self) -> bool:
        """True when the promotion would make the target fail."""
        return not self.verdict.allowed

    def words(self) -> str:
        """Why the check refuses the promotion, for people: reason and instruction."""
        new = len(self.verdict.new_errors)
        found = "; ".join(
            f"{f.location()}: [{f.rule}] {f.message.rstrip('.')}"
            for f in self.verdict.new_errors[:5]
        )
        more = f" (and {new - 5} more)" if new > 5 else ""
        return (
            f"The check of '{self.source}' fails with {new} error{'s' if new != 1 else ''} "
            f"that '{self.target}' does not have: {found}{more}. Fix them on "
            f"'{self.source}', or, as an administrator, promote it anyway and say so "
            "(override_check)."
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the verdict, and which commits were checked."""
        return {**self.verdict.as_dict(), "sha": self.source_sha, "target_sha": self.target_sha}


@dataclass(frozen=True)
class Promotion:
    """What a promotion did, and the check it was judged by."""

    request: ChangeRequest
    check: PromotionCheck | None
    """None when the source branch did not exist (the forge then said why)."""
    overridden: bool = False
    """True when an administrator promoted a branch the check refused."""


def check_source(
    ctx: ProjectContext,
    source: str,
    target: str,
    *,
    source_sha: str | None = None,
    target_sha: str | None = None,
) -> PromotionCheck | None:
    """The check of `source`'s head (given, or looked up), judged against `target`'s, which is
    read only when the source fails; None when the source branch does not exist. Commits are
    read once and kept (`service.checks`), so the compare page and the promotion after it
    cost the forge nothing more."""
    if source_sha is None:
        try:
            source_sha = ctx.state.heads.head(ctx.config.name, ctx.forge, source)
        except NotFound:
            return None
    known: dict[str, str] = {"target": target_sha} if target_sha else {}

    def target_check() -> CheckResult:
        if "target" not in known:
            try:
                known["target"] = ctx.state.heads.head(ctx.config.name, ctx.forge, target)
            except NotFound:
                return check_project({})
        return checks.check_at(ctx, known["target"])

    verdict = judge(checks.check_at(ctx, source_sha), target_check)
    return PromotionCheck(source, source_sha, target, known.get("target"), verdict)
