"""The one comment a check leaves on a pull/merge request, as Markdown (SPEC §9).

Everything in it but our own words comes from the repository, which anyone who can push
controls: a plugin named `` `x` `` or `<script>`, an `@team` that would ping people, a
`[link](javascript:...)`, an `#123` that would cross-reference an issue. Names go into
code spans fenced longer than any backtick run they hold (no Markdown, HTML, mention or
link is read inside one); sentences are escaped character by character, with a word joiner
(zero width, and no line break either) after each character that starts a forge reference
or an autolink. The comment is
cut to fit the forges' limit (GitHub keeps 65,536 characters), pointing at the findings
page for the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from client.check.changes import EntryChange, ProjectChanges, SettingChange

MARKER = "<!-- meltano-forge/check -->"
"""The hidden marker that finds our comment among the others."""
MAX_CHARS = 60_000
"""Below GitHub's 65,536, leaving room for the forge's own additions."""
NAME_MAX = 200
TEXT_MAX = 1000
JOINER = "\u2060"
"""U+2060 WORD JOINER: invisible, unbreakable, and not a character a mention or link takes."""

_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
_REFERENCE_STARTS = set("@#!~%$^:")
"""Mentions (@), issue, MR, label, milestone, snippet references (GitHub, GitLab), and
the `:` of an autolinked URL."""
_PUNCTUATION = set("\\`*_{}[]()+-.|=")


def _one_line(text: object, limit: int) -> str:
    flat = " ".join(str(text).split())
    flat = "".join(ch for ch in flat if ch.isprintable())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def plain(text: object, limit: int = TEXT_MAX) -> str:
    """Repository text as inert Markdown: shown as written, never read as markup, links,
    HTML, mentions or references."""
    out = []
    for ch in _one_line(text, limit):
        if ch in _HTML:
            out.append(_HTML[ch])
        elif ch in _REFERENCE_STARTS:
            out.append(f"\\{ch}{JOINER}")
        elif ch in _PUNCTUATION:
            out.append(f"\\{ch}")
        else:
            out.append(ch)
    escaped = "".join(out)
    return escaped.replace("www", f"w{JOINER}ww")


def code(text: object, limit: int = NAME_MAX) -> str:
    """A name in a code span whose fence is longer than any backtick run inside."""
    flat = _one_line(text, limit) or " "
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {flat} " if flat.startswith(("`", " ")) or flat.endswith(("`", " ")) else flat
    return f"{fence}{padded}{fence}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def describe(result: dict[str, Any]) -> str:
    """The status line: `2 errors, 1 warning`, or `No errors` (140 characters at most)."""
    errors, warnings = len(result["errors"]), len(result["warnings"])
    head = _count(errors, "error") if errors else "No errors"
    return f"{head}, {_count(warnings, 'warning')}" if warnings else head


def _finding(finding: dict[str, Any]) -> str:
    where = finding["file"] + (f":{finding['line']}" if finding.get("line") else "")
    return f"- {code(where)} \\[{plain(finding['rule'], 64)}\\] {plain(finding['message'])}"


def _entry(change: EntryChange) -> str:
    what = f"{change.kind} {code(change.name)}"
    if change.change != "changed" or not change.fields:
        return f"- **{change.change.capitalize()}** {what}"
    parts = [
        f"{plain(f.field, 64)} {code(f.before or '(none)')} → {code(f.after or '(none)')}"
        for f in change.fields
    ]
    return f"- **Changed** {what}: " + "; ".join(parts)


def _setting(change: SettingChange) -> str:
    where = []
    if change.environment is not None:
        where.append(f"environment {code(change.environment)}")
    if change.plugin is not None:
        where.append(f"{change.plugin_kind} {code(change.plugin)}")
    scope = ", ".join(where) or "project"
    noun = "setting" if change.plugin is not None else "variable"
    return f"- {scope}: {noun} {code(change.setting)} {change.change}"


def _changes(changes: ProjectChanges) -> list[str]:
    lines: list[str] = []
    if not changes.loaded_after:
        return ["- The project does not load at this commit: see the errors above."]
    if changes.default_environment is not None:
        d = changes.default_environment
        lines.append(
            f"- **Changed** default environment {code(d.before or '(none)')} → "
            f"{code(d.after or '(none)')}"
        )
    lines += [_entry(e) for e in changes.entries]
    if changes.settings:
        lines.append("- **Settings** (values are never shown):")
        lines += ["  " + _setting(s) for s in changes.settings]
    return lines or ["- Nothing that Meltano reads changed."]


def render(
    result: dict[str, Any],
    changes: ProjectChanges,
    *,
    sha: str,
    branch: str,
    target: str | None,
    base_sha: str | None,
    findings_url: str | None,
    max_chars: int = MAX_CHARS,
) -> str:
    """The comment: marker, verdict, findings, what the change does, cut to `max_chars`."""
    ok = bool(result["ok"])
    verdict = "passed" if ok else "failed"
    against = f" against {code(target)} at {code(base_sha[:12])}" if target and base_sha else ""
    link = f" [Findings page]({findings_url})" if findings_url else ""
    head = [
        MARKER,
        f"### meltano-forge check {verdict}: {describe(result)}",
        "",
        f"Commit {code(sha[:12])} of {code(branch)}{against}.{link}",
    ]
    sections: list[tuple[str, list[str]]] = [
        ("#### Errors", [_finding(f) for f in result["errors"]]),
        ("#### Warnings", [_finding(f) for f in result["warnings"]]),
        ("#### What this change does to the project", _changes(changes)),
    ]
    return _fit(head, sections, max_chars, findings_url)


def _fit(
    head: list[str],
    sections: Iterable[tuple[str, list[str]]],
    max_chars: int,
    findings_url: str | None,
) -> str:
    tail = "_…cut to fit the forge's limit: {} more lines{}._"
    reserve = len(tail) + 200
    lines = list(head)
    used = sum(len(line) + 1 for line in lines)
    left_out = 0
    for title, body in sections:
        if not body:
            continue
        for i, line in enumerate(["", title, *body]):
            if left_out or used + len(line) + 1 > max_chars - reserve:
                left_out += 1 if i > 1 else 0
                continue
            lines.append(line)
            used += len(line) + 1
    if left_out:
        where = f", on the [findings page]({findings_url})" if findings_url else ""
        lines += ["", tail.format(left_out, where)]
    return "\n".join(lines) + "\n"
