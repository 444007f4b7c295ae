"""Agreement with Meltano is the measure: `check` fails exactly where real `meltano`
fails on the corpus (tests/check_corpus), and passes exactly where it passes, except for
the extra rules, where Meltano accepts a project that is wrong.

The record of what real Meltano did is `tests/check_corpus/expected.json`, written by
`python -m tests.check_corpus.generate` (heavy: it runs meltano a few hundred times). The
fast tests compare against the record; the slow one re-runs real Meltano on a sample to
show the record still holds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from client.check import CheckResult, Severity, check_project
from tests.check_corpus.cases import CASES, Case, files_of
from tests.check_corpus.generate import EXPECTED, meltano_verdict

RECORD: dict[str, Any] = json.loads(EXPECTED.read_text())
EXTRA_RULES = {
    "schema": "Meltano's own schema refuses the file, but Meltano does not apply it when it "
    "loads a project (a misspelt top-level key is silently ignored)",
    "literal-secret": "a sensitive setting written as a literal (Meltano runs it)",
    "token": "a value in the secret guard's token formats (Meltano runs it)",
    "job-command": "a task names a command its plugin does not define: `meltano run "
    "--dry-run` does not look commands up, but a real run fails with UnknownCommandError "
    "(meltano/core/plugin_invoker.py)",
}
"""The rules that fail projects Meltano accepts, by design, and why."""
SAMPLE = ("el-basic", "job-missing-command", "schema-unknown-top-key", "schedule-missing-job")
"""Cases the slow test re-runs through real Meltano."""


def _check(case: Case) -> CheckResult:
    return check_project(files_of(case))


def test_the_corpus_is_large_and_fully_recorded() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)
    assert set(RECORD["cases"]) == {c.name for c in CASES}, "run tests/check_corpus/generate.py"
    assert RECORD["meltano"].startswith("meltano, version 4.")
    assert {c.extra for c in CASES if c.extra} <= set(EXTRA_RULES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_check_agrees_with_real_meltano(case: Case) -> None:
    meltano = RECORD["cases"][case.name]
    result = _check(case)
    said = [f"{f.location()} [{f.rule}] {f.message}" for f in result.errors]
    if case.extra:
        assert meltano["meltano_ok"], f"Meltano refuses {case.name}: it is not an extra rule"
        assert result.rules(Severity.ERROR) == {case.extra}, said
    elif meltano["meltano_ok"]:
        assert result.ok, said
    else:
        assert not result.ok, f"Meltano refuses it: {meltano['commands'][-1]}"
    assert set(case.warns) <= result.rules(Severity.WARNING)


def test_the_agreement_figure() -> None:
    """The figure the README and the report quote: every case agrees."""
    agree = extra = 0
    for case in CASES:
        meltano_ok = RECORD["cases"][case.name]["meltano_ok"]
        result = _check(case)
        if case.extra:
            extra += meltano_ok and result.rules(Severity.ERROR) == {case.extra}
        else:
            agree += result.ok == meltano_ok
    fails = sum(not RECORD["cases"][c.name]["meltano_ok"] for c in CASES)
    print(f"agreement: {agree + extra}/{len(CASES)} ({fails} refused by Meltano, {extra} extra)")
    assert agree + extra == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("name", SAMPLE)
def test_the_record_still_holds_for_real_meltano(name: str) -> None:
    (case,) = [c for c in CASES if c.name == name]
    verdict = meltano_verdict(files_of(case))
    assert verdict["meltano_ok"] == RECORD["cases"][name]["meltano_ok"], verdict["commands"]
