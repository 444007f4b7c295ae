"""Git-style patches that `git apply` accepts: what `diff` prints and rescue bundles hold.

Text follows `git diff` byte for byte in structure: `diff --git` headers, `new file mode`,
`deleted file mode`, `old mode`/`new mode`, `index` lines, hunks with three lines of
context, and "\\ No newline at end of file". A symlink's content is its target. A file with
a NUL byte in its first 8,000 bytes is binary, as git decides: "Binary files ... differ",
or with `binary=True` git's own binary patch (zlib, then base85, 52 bytes a line). A binary
patch needs no old content, only the old blob's id, so a rescue bundle can be written
when the forge cannot be asked for the base version.
"""

from __future__ import annotations

import base64
import difflib
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from client.staging import blob_sha
from providers.contract import FileMode

NULL_SHA = "0" * 40
NO_NEWLINE = b"\\ No newline at end of file\n"


@dataclass(frozen=True)
class Side:
    """One side of a file's change."""

    data: bytes | None
    """The bytes (a link's target); None when only `sha` is known."""
    mode: FileMode
    sha: str

    @classmethod
    def of(cls, data: bytes, mode: FileMode) -> Side:
        """A side from its bytes."""
        return cls(data, mode, blob_sha(data))


@dataclass(frozen=True)
class FileDiff:
    """A path before and after; `old` None for a new file, `new` None for a deleted one."""

    path: str
    old: Side | None
    new: Side | None

    @property
    def status(self) -> str:
        """git's letter: A, D, M (content or mode), or T (a file became a link or back)."""
        if self.old is None:
            return "A"
        if self.new is None:
            return "D"
        if (self.old.mode is FileMode.SYMLINK) != (self.new.mode is FileMode.SYMLINK):
            return "T"
        return "M"


def is_binary(data: bytes | None) -> bool:
    """git's rule: a NUL byte within the first 8,000 bytes."""
    return data is not None and b"\x00" in data[:8000]


def render(diffs: Iterable[FileDiff], *, binary: bool = False) -> bytes:
    """The whole patch."""
    out: list[bytes] = []
    for diff in sorted(diffs, key=lambda d: d.path):
        if diff.status == "T":  # git shows a type change as a deletion and an addition
            out += _file(FileDiff(diff.path, diff.old, None), binary)
            out += _file(FileDiff(diff.path, None, diff.new), binary)
        else:
            out += _file(diff, binary)
    return b"".join(out)


_C_ESCAPES = {7: b"\\a", 8: b"\\b", 9: b"\\t", 10: b"\\n", 11: b"\\v", 12: b"\\f", 13: b"\\r"}


def quoted(name: bytes) -> bytes:
    """A path as git writes it in a patch (`quote_c_style`, with core.quotePath on): as it
    is when plain, else in double quotes with C escapes and octal for other bytes. So a
    name holding a newline or an escape sequence can neither forge a patch line nor steer
    a terminal, and `git apply` reads it back exactly."""
    if not any(b < 0x20 or b >= 0x7F or b in b'"\\' for b in name):
        return name
    out = bytearray(b'"')
    for byte in name:
        if byte in b'"\\':
            out += b"\\" + bytes([byte])
        elif byte in _C_ESCAPES:
            out += _C_ESCAPES[byte]
        elif byte < 0x20 or byte >= 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


def _short(sha: str, full: bool) -> str:
    return sha if full else sha[:7]


def _file(diff: FileDiff, binary: bool) -> list[bytes]:
    path = diff.path.encode("utf-8", "surrogateescape")
    old, new = diff.old, diff.new
    head = [b"diff --git " + quoted(b"a/" + path) + b" " + quoted(b"b/" + path) + b"\n"]
    as_binary = is_binary(old.data if old else None) or is_binary(new.data if new else None)
    blind = (old is not None and old.data is None) or (new is not None and new.data is None)
    full = binary and (as_binary or blind)
    old_sha = old.sha if old else NULL_SHA
    new_sha = new.sha if new else NULL_SHA
    index = f"index {_short(old_sha, full)}..{_short(new_sha, full)}"
    if old is None:
        assert new is not None  # noqa: S101
        head.append(f"new file mode {new.mode.git}\n{index}\n".encode())
    elif new is None:
        head.append(f"deleted file mode {old.mode.git}\n{index}\n".encode())
    elif old.mode != new.mode:
        head.append(f"old mode {old.mode.git}\nnew mode {new.mode.git}\n".encode())
        if old_sha == new_sha:
            return head
        head.append(f"{index}\n".encode())
    else:
        if old_sha == new_sha:
            return []
        head.append(f"{index} {new.mode.git}\n".encode())
    if not blind and not (old and old.data) and not (new and new.data):
        return head  # a new or deleted empty file: headers only, as git prints
    a = quoted(b"a/" + path) if old else b"/dev/null"
    b = quoted(b"b/" + path) if new else b"/dev/null"
    if as_binary or blind:
        if not binary:
            return [*head, b"Binary files " + a + b" and " + b + b" differ\n"]
        return [*head, b"GIT binary patch\n", *_binary(new, old)]
    tab = b"\t" if b" " in path else b""  # git ends a name that holds a space with a tab
    return [
        *head,
        b"--- " + a + (tab if old else b"") + b"\n",
        b"+++ " + b + (tab if new else b"") + b"\n",
        *_hunks(old, new),
    ]


def _hunks(old: Side | None, new: Side | None) -> list[bytes]:
    # latin-1 maps every byte to one character and back, so the patch keeps exact bytes
    before = (old.data or b"").decode("latin-1").splitlines(True) if old else []
    after = (new.data or b"").decode("latin-1").splitlines(True) if new else []
    out: list[bytes] = []
    for number, line in enumerate(difflib.unified_diff(before, after, n=3)):
        if number < 2:  # difflib's own ---/+++ lines; ours are above
            continue
        data = line.encode("latin-1")
        if line.startswith("@@"):
            out.append(_with_function(data, before))
        elif data.endswith(b"\n"):
            out.append(data)
        else:
            out += [data + b"\n", NO_NEWLINE]
    return out


_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? ")


def _with_function(header: bytes, before: list[str]) -> bytes:
    """git's default hunk header context: the nearest line above the hunk that starts with
    a letter, `_` or `$`, trailing space trimmed, at most 80 bytes."""
    found = _HUNK.match(header)
    if found is None:
        return header
    start = int(found[1]) - (0 if found[2] == b"0" else 1)
    for line in reversed(before[:start]):
        if line[:1].isalpha() or line[:1] in ("_", "$"):
            context = line.rstrip().encode("latin-1")[:80]
            return header.rstrip(b"\n") + b" " + context + b"\n"
    return header


def _binary(new: Side | None, old: Side | None) -> list[bytes]:
    """git's binary hunks: the new content (forward), then the old (reverse) if known."""
    out = _literal(new.data if new and new.data is not None else b"")
    if old is not None and old.data is not None:
        out += _literal(old.data)
    return out


def _literal(data: bytes) -> list[bytes]:
    deflated = zlib.compress(data, 9)
    lines = [f"literal {len(data)}\n".encode()]
    for start in range(0, len(deflated), 52):
        chunk = deflated[start : start + 52]
        size = len(chunk)
        marker = chr(ord("A") + size - 1) if size <= 26 else chr(ord("a") + size - 27)
        lines.append(marker.encode() + base64.b85encode(chunk, pad=True) + b"\n")
    return [*lines, b"\n"]


def stat(diffs: Iterable[FileDiff]) -> str:
    """`git diff --stat`: a line a file with its +/- counts, then the totals."""
    rows = []
    inserted = deleted = 0
    for diff in sorted(diffs, key=lambda d: d.path):
        old, new = diff.old, diff.new
        if is_binary(old.data if old else None) or is_binary(new.data if new else None):
            rows.append((diff.path, "Bin"))
            continue
        before = (old.data or b"").decode("latin-1").splitlines(True) if old else []
        after = (new.data or b"").decode("latin-1").splitlines(True) if new else []
        plus = minus = 0
        for number, line in enumerate(difflib.unified_diff(before, after, n=0)):
            if number >= 2:
                plus += line.startswith("+")
                minus += line.startswith("-")
        inserted, deleted = inserted + plus, deleted + minus
        rows.append((diff.path, f"{plus + minus} {'+' * min(plus, 40)}{'-' * min(minus, 40)}"))
    if not rows:
        return ""
    width = max(len(p) for p, _ in rows)
    lines = [f" {p:<{width}} | {counts}".rstrip() for p, counts in rows]
    files = f"{len(rows)} file{'s' if len(rows) != 1 else ''} changed"
    parts = [files]
    if inserted:
        parts.append(f"{inserted} insertion{'s' if inserted != 1 else ''}(+)")
    if deleted:
        parts.append(f"{deleted} deletion{'s' if deleted != 1 else ''}(-)")
    return "\n".join([*lines, " " + ", ".join(parts)])


def name_status(diffs: Iterable[FileDiff]) -> str:
    """`git diff --name-status`."""
    return "\n".join(f"{d.status}\t{d.path}" for d in sorted(diffs, key=lambda d: d.path))
