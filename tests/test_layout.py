"""The house has floors (SPEC §1, the README's "How the code is laid out"): `providers/`
imports neither `client/` nor `service/`, and `client/` never imports `service/`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BELOW = {"providers": ("client", "service"), "client": ("service",)}


def imported(path: Path) -> set[str]:
    """Top-level packages a module imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("floor", sorted(BELOW))
def test_imports_point_down_only(floor: str) -> None:
    upward = {
        str(path.relative_to(ROOT)): sorted(imported(path) & set(BELOW[floor]))
        for path in (ROOT / floor).rglob("*.py")
    }
    assert {k: v for k, v in upward.items() if v} == {}
