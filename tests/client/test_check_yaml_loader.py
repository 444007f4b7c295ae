"""The check's YAML on libyaml's event parser reads exactly what the pure-Python loader
reads: the same data, the same `Located` lines and key lines, the same refusals (syntax
errors in PyYAML's own words and positions, duplicate keys, depth and size bounds), on
Meltano's fixtures, on every file of the agreement corpus and on YAML's awkward corners."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from client.bounded_yaml import MAX_DEPTH, YamlRefused, YamlTooLarge, load
from client.check import located_yaml
from client.check.located_yaml import Located, LocatedList, load_located
from tests.check_corpus.cases import CASES, files_of

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "meltano"

CORNERS = {
    "anchors and merge keys": b"base: &b {a: 1, b: [x, y]}\nplugins:\n  extractors:\n"
    b"  - <<: *b\n    name: tap\n    b: [z]\n  - {<<: [*b], name: t2}\n",
    "scalars YAML 1.1 resolves": b"a: yes\nb: 0o17\nc: 017\nd: 1_000\ne: 2024-01-02\n"
    b"f: 2024-01-02T03:04:05Z\ng: .inf\nh: ~\ni: '1'\nj: !!str 2\nk: 0x1f\nl: 1e3\n",
    "block scalars": b"a: |\n  one\n   two\nb: >-\n  folded\n  text\n\nc: |+\n  kept\n\n",
    "flow and quoting": b'{"a": [1, {b: c}], \'d\': "e\\tf", g: [], h: {}}\n',
    "comments and blank lines": b"# top\n\na: 1 # after\n\n# between\nb:\n  # inside\n  c: 2\n",
    "unicode": "ünï: cødé\n日本: [語, '\\u00e9']\n".encode(),
    "a BOM": b"\xef\xbb\xbfa: 1\n",
    "complex keys": b"? [a, b]\n: 1\n? {c: d}\n: 2\n",
    "a list at the top": b"- a\n- b: 1\n",
    "a scalar at the top": b"just text\n",
    "empty": b"",
    "only a comment": b"# nothing\n",
    "explicit document": b"%YAML 1.1\n---\na: 1\n...\n",
    "syntax error": b"jobs:\n- name: x\n  tasks: [a, b\n",
    "bad indentation": b"a:\n  b: 1\n c: 2\n",
    "tab indentation": b"a:\n\tb: 1\n",
    "two documents": b"a: 1\n---\nb: 2\n",
    "undefined alias": b"a: *nowhere\n",
    "duplicate key": b"plugins: {}\njobs: []\nplugins: {}\n",
    "duplicate nested key": b"a:\n  b: 1\n  c: 2\n  b: 3\n",
    "invalid UTF-8": b"a: \xff\xfe\n",
    "a control character": b"a: \x07\n",
    "an unknown tag": b"a: !!python/object:os.system ls\n",
    "too deep": b"a: " + b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5) + b"\n",
    "too many values": b"[" + b"a, " * 200_001 + b"a]\n",
    "laughs": b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True)
    ).encode(),
}


def _shape(value: Any) -> Any:
    """The data with every mapping's line and key lines and every sequence's item lines,
    comparable with `==`."""
    if isinstance(value, Located):
        lines = getattr(value, "key_lines", None)
        return ("map", value.line, lines, [(k, _shape(v)) for k, v in value.items()])
    if isinstance(value, dict):
        return ("dict", [(k, _shape(v)) for k, v in value.items()])
    if isinstance(value, LocatedList):
        return ("seq", getattr(value, "item_lines", None), [_shape(v) for v in value])
    if isinstance(value, list):
        return ("list", [_shape(v) for v in value])
    return (type(value).__name__, value)


def _outcome(data: bytes, loader: type[Any]) -> Any:
    return _caught(lambda: load(data, "f.yml", loader_class=loader))


def _through_check(data: bytes) -> Any:
    return _caught(lambda: load_located(data, "f.yml"))


def _caught(read: Callable[[], Any]) -> Any:
    try:
        return ("loaded", _shape(read()))
    except YamlRefused as exc:
        return (type(exc).__name__, exc.reason, exc.instruction, exc.line, exc.column)
    except yaml.YAMLError as exc:  # PyYAML's reader refuses these bytes as it starts
        return ("raised", type(exc).__name__, str(exc))


def _documents() -> dict[str, bytes]:
    found = {f"corner: {k}": v for k, v in CORNERS.items()}
    for path in sorted(FIXTURES.rglob("*.yml")):
        found[f"fixture: {path.relative_to(FIXTURES)}"] = path.read_bytes()
    for case in CASES:
        for name, data in files_of(case).items():
            if name.endswith((".yml", ".yaml")):
                found.setdefault(f"corpus: {case.name}/{name}", data)
    return found


DOCUMENTS = _documents()


def test_libyaml_is_in_use() -> None:
    """The fast loader exists here, so the comparisons below compare two loaders."""
    assert located_yaml._FAST is not None


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_the_fast_loader_reads_what_the_python_loader_reads(name: str) -> None:
    data = DOCUMENTS[name]
    slow = _outcome(data, located_yaml._CheckLoader)
    assert _through_check(data) == slow
    fast = located_yaml._FAST
    assert fast is not None
    if slow[0] in ("loaded", "YamlTooLarge"):  # no fallback: libyaml's events alone
        assert _outcome(data, fast) == slow


def test_refusals_keep_their_kind() -> None:
    with pytest.raises(YamlTooLarge, match="deeper"):
        load_located(CORNERS["too deep"], "f.yml")
    with pytest.raises(YamlRefused, match="appears twice"):
        load_located(CORNERS["duplicate key"], "f.yml")
    assert len(DOCUMENTS) > 60
