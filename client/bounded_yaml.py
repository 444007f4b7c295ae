"""YAML from a repository, loaded with bounds: depth, size and alias expansion.

Repository content is untrusted (SPEC §8). PyYAML shares an alias's target instead of
copying it, so a 545-byte "billion laughs" file loads in microseconds, and then explodes
when anything walks it (JSON, a summary, a hash): hundreds of megabytes from one GET. A
deeply nested `[[[...]]]` exhausts the composer's recursion instead. Both are refused here,
while the document is composed and before any Python object is built, with a `YamlRefused`
that says what to fix. Anchors and merge keys that real projects use stay within the caps.

Every YAML load of repository content goes through `load` (the client's settings, the
plugin list, the service's summary, pages and edits); `check_text` bounds text that a
round-trip parser (ruamel) loads afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_DEPTH = 64
"""Nesting deeper than this is refused; real Meltano projects stay under 10."""
MAX_NODES = 200_000
"""Scalars, sequences and mappings after every alias is expanded."""
MAX_BYTES = 16 * 1024 * 1024
"""A larger YAML document is refused before parsing."""


class YamlRefused(ValueError):
    """The document is not YAML, or exceeds the bounds. `str()` reads "reason. instruction."
    with the file's name and, for a syntax error, its line and column."""

    def __init__(
        self,
        what: str,
        reason: str,
        instruction: str,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.what, self.reason, self.instruction, self.line = what, reason, instruction, line
        self.column = column
        where = f"{what} line {line}" if line is not None else what
        super().__init__(f"{where}: {reason}. {instruction}")


class YamlTooLarge(YamlRefused):
    """The document may well be YAML, but it is too large, too deep or expands too far."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts depth and nodes as it goes: a flat 16 MiB
    `[a, a, ...]` is refused at the cap, not after millions of nodes (gigabytes, minutes)."""

    def __init__(self, stream: str | bytes, what: str) -> None:
        super().__init__(stream)
        self.what = what
        self.depth = 0
        self.composed = 0

    def _line(self) -> int:
        """The line (from 1) of the node about to be composed."""
        event = self.peek_event()  # type: ignore[no-untyped-call]
        return int(event.start_mark.line) + 1

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if not self.check_event(AliasEvent):
            self.composed += 1
            if self.composed > MAX_NODES:
                raise YamlTooLarge(
                    self.what,
                    f"it holds more than {MAX_NODES:,} values",
                    "Split it with include_paths",
                    self._line(),
                )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise YamlTooLarge(
                self.what,
                f"it nests deeper than {MAX_DEPTH} levels",
                "Flatten the document; Meltano projects never need this depth",
                self._line(),
            )
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self.depth -= 1


BoundedLoader = _BoundedLoader
"""The loader `load` uses, public so a stricter subclass can be passed to it."""


def _expanded_size(root: Node, what: str) -> int:
    """Nodes in the document with every alias expanded, counted without expanding them
    (each node's size is remembered, so shared subtrees cost one visit)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            sizes[id(node)] = 1
            continue
        if children_done:
            total = 1 + sum(sizes[id(c)] for c in children)
            if total > MAX_NODES:
                raise YamlTooLarge(
                    what,
                    f"its aliases expand to more than {MAX_NODES:,} values",
                    "Write the repeated parts out, or use fewer nested anchors",
                    node.start_mark.line + 1,
                )
            sizes[id(node)] = total
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


@dataclass
class Budget:
    """Values left for documents read together (a project's `meltano.yml` and every file
    its `include_paths` match): each file is bounded alone, and so is their sum, or a
    thousand include files of 200,000 values each would make one answer of 200 million."""

    left: int = MAX_NODES

    def spend(self, size: int, what: str) -> None:
        """Take a document's expanded size, or refuse it once the whole set is too large."""
        self.left -= size
        if self.left < 0:
            raise YamlTooLarge(
                what,
                f"with the files read before it, the project's YAML expands to more than "
                f"{MAX_NODES:,} values",
                "Move data out of the project's YAML files",
            )


def _unreadable(data: str | bytes, what: str, exc: yaml.reader.ReaderError) -> YamlRefused:
    """A byte YAML does not read (a control character, bytes that are not UTF-8), with
    the line it is on."""
    before = data[: exc.position]
    line = (before.count(b"\n") if isinstance(before, bytes) else before.count("\n")) + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    char = f"the character U+{code:04X}" if exc.encoding == "unicode" else f"the byte 0x{code:02x}"
    return YamlRefused(
        what,
        f"it holds {char}, which YAML does not allow ({exc.reason})",
        "Save it as UTF-8 text without control characters",
        line,
    )


def load(
    data: str | bytes,
    what: str = "meltano.yml",
    loader_class: type[BoundedLoader] | None = None,
    budget: Budget | None = None,
) -> Any:
    """The document as plain Python data (SafeLoader types), or `YamlRefused`.
    `loader_class` lets a caller construct more strictly (the project check refuses
    duplicate keys and keeps line numbers) within the same bounds; `budget` bounds a set
    of documents together."""
    if len(data) > MAX_BYTES:
        raise YamlTooLarge(
            what,
            f"it is larger than {MAX_BYTES // (1024 * 1024)} MiB",
            "Split it with include_paths",
        )
    try:
        loader = (loader_class or _BoundedLoader)(data, what)  # its reader checks the bytes
    except yaml.reader.ReaderError as exc:
        raise _unreadable(data, what, exc) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, what)
        if budget is not None:
            budget.spend(size, what)
        return loader.construct_document(node)
    except YamlRefused:
        raise
    except yaml.reader.ReaderError as exc:  # a str checked as it is read
        raise _unreadable(data, what, exc) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlRefused(
            what,
            f"it is not valid YAML ({problem})",
            "Fix the syntax",
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
        ) from None
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError) as exc:
        raise YamlRefused(
            what, f"it is not valid YAML ({type(exc).__name__})", "Fix the syntax"
        ) from None
    finally:
        loader.dispose()


def check_text(data: str | bytes, what: str = "meltano.yml") -> None:
    """Refuse `data` as `load` would, for a parser that loads it afterwards."""
    load(data, what)
