"""What a project check found: findings with their file, line, rule and remedy."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.StrEnum):
    """An error breaks a runner or leaks a secret; a warning is something a working real
    project may do, so it never fails the check."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One thing the check found, said so that a person knows what to do."""

    rule: str
    """The rule's name (`job-task`, `literal-secret`, ...), stable for machines."""
    severity: Severity
    """Whether it fails the check."""
    file: str
    """Project-relative path of the file it is in."""
    line: int | None
    """1-based line, when the finding points at one."""
    reason: str
    """What is wrong."""
    instruction: str
    """What to do about it."""
    column: int | None = None
    """1-based column, for YAML syntax errors."""

    @property
    def message(self) -> str:
        """'reason. instruction.', the way every error reads in meltano-forge."""
        return f"{self.reason}. {self.instruction}."

    def location(self) -> str:
        """`file:line:column`, as editors and CI logs link it."""
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data."""
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }


@dataclass(frozen=True)
class CheckResult:
    """Every finding of one check, errors first, then by file and line."""

    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings that fail the check."""
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The findings that only warn."""
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)

    @property
    def ok(self) -> bool:
        """True when nothing would break a runner or leak a secret."""
        return not self.errors

    def rules(self, severity: Severity | None = None) -> set[str]:
        """The names of the rules that found something (of one severity, if given)."""
        return {f.rule for f in self.findings if severity is None or f.severity is severity}

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (`meltano-forge check --json`)."""
        return {
            "ok": self.ok,
            "errors": [f.as_dict() for f in self.errors],
            "warnings": [f.as_dict() for f in self.warnings],
        }

    @classmethod
    def of(cls, findings: list[Finding]) -> CheckResult:
        """Findings sorted for reading, with exact repeats dropped."""
        unique = dict.fromkeys(findings)
        order = sorted(
            unique,
            key=lambda f: (f.severity is not Severity.ERROR, f.file, f.line or 0, f.rule),
        )
        return cls(tuple(order))
