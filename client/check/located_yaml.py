"""YAML loaded for the check: bounded like every repository read, with duplicate keys
refused and every mapping remembering its line.

PyYAML silently keeps the last of two equal keys, while Meltano's ruamel loader refuses
the file, so a duplicate is a runner-breaking error that only a stricter constructor sees.
Findings point at lines, so mappings are `Located` dicts that carry where they and their
keys start; they are still plain dicts to everything else (JSON schema, the rules).

Speed: PyYAML's pure-Python scanner and parser were 80 % of a check on the fixtures. When
libyaml is there, its parser produces the events (C) and the same bounded Python composer
and constructors build the document from them: the same nodes, marks, bounds and
`Located` lines, about five times faster. A document libyaml refuses is loaded again the
pure-Python way, so a syntax error reads exactly as it always has.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from client.bounded_yaml import BoundedLoader, YamlRefused, YamlTooLarge, load

MERGE_TAG = "tag:yaml.org,2002:merge"


class Located(dict[Any, Any]):
    """A mapping with the 1-based line it starts at, and the line of each key."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        """The line of `key`, or of the mapping when the key is not there."""
        return self.key_lines.get(key, self.line) if hasattr(self, "key_lines") else self.line


class LocatedList(list[Any]):
    """A sequence with the 1-based line of each item."""

    item_lines: list[int]


class _CheckLoader(BoundedLoader):
    """The bounded loader, stricter: duplicate keys refused, lines kept."""

    def construct_located_map(self, node: MappingNode) -> Iterator[Located]:
        """The map constructor: yields the empty mapping first so aliases can refer to
        it, as PyYAML's own does."""
        data = Located()
        data.line = node.start_mark.line + 1
        yield data
        self._refuse_duplicates(node)
        data.update(self.construct_mapping(node))
        key_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node)
            try:
                key_lines.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # unhashable keys were refused by construct_mapping already
                continue
        data.key_lines = key_lines

    def construct_located_seq(self, node: SequenceNode) -> Iterator[LocatedList]:
        """The sequence constructor, remembering where each item starts."""
        data = LocatedList()
        data.item_lines = [item.start_mark.line + 1 for item in node.value]
        yield data
        data.extend(self.construct_sequence(node))

    def _refuse_duplicates(self, node: MappingNode) -> None:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node, ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise YamlRefused(
                    self.what,
                    f"the key '{key}' appears twice (first on line {seen[key]}), and Meltano "
                    "refuses a file with duplicate keys",
                    "Keep one of them",
                    line,
                    key_node.start_mark.column + 1,
                )
            seen[key] = line


_CheckLoader.add_constructor(
    "tag:yaml.org,2002:map",
    _CheckLoader.construct_located_map,
)
_CheckLoader.add_constructor(
    "tag:yaml.org,2002:seq",
    _CheckLoader.construct_located_seq,
)


def _with_libyaml() -> type[_CheckLoader] | None:
    """`_CheckLoader` on libyaml's event parser, or None when PyYAML was built without it."""
    try:
        from yaml._yaml import CParser
    except ImportError:  # pragma: no cover - the wheels on every platform we ship hold it
        return None

    class _FastCheckLoader(CParser, _CheckLoader):
        """libyaml's events (`check_event`, `peek_event`, `get_event`), composed by
        PyYAML's Python composer under the bounds, never by libyaml's own composer."""

        get_single_node = Composer.get_single_node
        get_node = Composer.get_node
        check_node = Composer.check_node

        def __init__(self, stream: str | bytes, what: str) -> None:
            _CheckLoader.__init__(self, stream, what)
            CParser.__init__(self, stream)

    return _FastCheckLoader


_FAST = _with_libyaml() if yaml.__with_libyaml__ else None


def load_located(data: bytes, what: str) -> Any:
    """The document with `Located` mappings, or `YamlRefused` (syntax, bounds, duplicates)."""
    if _FAST is not None:
        try:
            return load(data, what, loader_class=_FAST)
        except YamlTooLarge:
            raise  # the same composer counted the same events: the same refusal
        except YamlRefused:
            pass  # said again below in PyYAML's own words, at PyYAML's line and column
    return load(data, what, loader_class=_CheckLoader)


def node_line(node: Node) -> int:
    """A node's 1-based line."""
    return node.start_mark.line + 1
