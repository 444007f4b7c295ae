"""The check as a gate (SPEC §9): a commit, a runner's auto-commit or a promotion may not make
a project worse than the one it lands on.

A project that passes the check passes the gate. A project that already fails on the
branch a change lands on (its base for a commit, the target for a promotion) is judged
against it: the change passes when it adds no error the base does not already have. So the
fix of a broken project can always land, one error at a time (a change that removes errors
and adds none), and a change elsewhere in a broken project is not held hostage by errors it
did not make; but a change that trades one error for another is refused, since the error
it adds breaks something that worked (a new literal secret leaks the moment it lands).

Errors are told apart by rule, file and message, not by line, as many times as each
occurs: an edit above an old error moves its line without making it new. It is the rule
the web editor's commits follow too (`service.editor_checks`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the check loads when a gate runs: every other command starts as fast
    from client.check.result import CheckResult, Finding


def _key(finding: Finding) -> tuple[str, str, str]:
    return (finding.rule, finding.file, finding.message)


@dataclass(frozen=True)
class Verdict:
    """The check of what a branch will hold, judged against what it holds now."""

    result: CheckResult
    """The check of the project once the change (or the promotion) lands."""
    base: CheckResult | None = None
    """The check of the project it lands on; None when `result` passes (not needed)."""

    @property
    def new_errors(self) -> tuple[Finding, ...]:
        """The errors of `result` that the base does not have (all of them, without one)."""
        if self.base is None:
            return self.result.errors
        left = Counter(_key(f) for f in self.base.errors)
        new = []
        for finding in self.result.errors:
            if left[_key(finding)] > 0:
                left[_key(finding)] -= 1
            else:
                new.append(finding)
        return tuple(new)

    @property
    def allowed(self) -> bool:
        """Whether the change may land: it adds no error (see the module docstring)."""
        return self.result.ok or not self.new_errors

    @property
    def already_failing(self) -> bool:
        """True when the base itself fails the check."""
        return self.base is not None and not self.base.ok

    def summary(self, base_name: str) -> str:
        """One line for people: why the change may land, or why not."""
        errors = len(self.result.errors)
        if self.result.ok:
            return "the check passes"
        if not self.allowed:
            new = len(self.new_errors)
            adds = f"{new} error{'s' if new != 1 else ''}"
            if self.already_failing:
                return f"the check fails: it adds {adds} that {base_name} does not have"
            return f"the check fails ({adds})"
        assert self.base is not None  # noqa: S101 - a failing result is allowed only against a base
        before = len(self.base.errors)
        fixed = f"fixes {before - errors} and " if errors < before else ""
        return (
            f"{base_name} already fails the check ({before} error{'s' if before != 1 else ''}); "
            f"this {fixed}adds none"
        )

    def as_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready data: the check's own fields, and how it was judged."""
        return {
            **self.result.as_dict(),
            "allowed": self.allowed,
            "new_errors": [f.as_dict() for f in self.new_errors],
            "base_errors": None if self.base is None else len(self.base.errors),
        }


def judge(result: CheckResult, base: Callable[[], CheckResult]) -> Verdict:
    """The verdict on `result`; `base` (the check of what it lands on) is asked only when
    `result` fails, so a passing change costs nothing more."""
    if result.ok:
        return Verdict(result)
    return Verdict(result, base())


class CheckRefused(Exception):
    """A change or a promotion the gate refused; nothing reached the forge. `verdict` holds
    the findings, for the caller to show."""

    def __init__(self, verdict: Verdict, reason: str, instruction: str) -> None:
        self.verdict = verdict
        self.reason, self.instruction = reason.rstrip("."), instruction.rstrip(".")
        super().__init__(f"{self.reason}. {self.instruction}.")
