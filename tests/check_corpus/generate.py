"""Run real `meltano` on every corpus case and record what it did in `expected.json`.

Usage: python -m tests.check_corpus.generate [CASE ...]   (default: every case)

For each case the project is written to a fresh folder and these commands run, in order,
until one fails: `meltano compile` (every environment), `meltano config list` for up to
two extractors and loaders, `meltano run --dry-run JOB` for each job, and
`meltano schedule run NAME --dry-run` for each schedule (`--dry` for an extractor and
loader schedule, which Meltano runs through `meltano el`). None of them needs an installed
plugin (a dry run resolves the blocks and stops before invoking anything). Meltano runs
without Hub access, as a cold runner would, and with its version check and anonymous
usage statistics off. Heavy: a few seconds per command; run it once, not in a loop.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.check_corpus.cases import CASES, ROOT, Case, files_of

EXPECTED = Path(__file__).resolve().parent / "expected.json"
CONFIG_LISTS = 2
_STAMP = re.compile(r"^\S+Z \[\s*\w+\s*\] (?:meltano\s+)?")


def meltano() -> str:
    """The `meltano` executable: on PATH, or the repository's `.venv-meltano`."""
    return shutil.which("meltano") or str(ROOT / ".venv-meltano" / "bin" / "meltano")


def _names(
    files: dict[str, bytes],
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Plugins to `config list`, jobs and schedules, read leniently (the commands decide)."""
    from client.check.project import load_project
    from client.check.project_files import MappingReader

    project = load_project(MappingReader(files))
    plugins = [p.name for p in project.plugins() if p.kind in ("extractors", "loaders")]
    jobs = [j.name for j in project.entries("jobs")]
    schedules = [
        (s.name, "--dry-run" if "job" in s.data else "--dry") for s in project.entries("schedules")
    ]
    return plugins[:CONFIG_LISTS], list(dict.fromkeys(jobs)), list(dict.fromkeys(schedules))


def _said(output: str) -> str:
    """The line of Meltano's output that says why it failed (not a traceback's frame)."""
    lines = [_STAMP.sub("", line).strip() for line in output.splitlines()]
    lines = [line for line in lines if line and not any(c in line for c in "│╭╰─")]
    wanted = [
        line
        for line in lines
        if re.search(r"error|not found|invalid|missing|refus|duplicate", line, re.I)
        and not line.startswith("Need help")
    ]
    return (wanted or lines or [""])[-1][:300]


def meltano_verdict(files: dict[str, bytes]) -> dict[str, Any]:
    """What real Meltano does with a project: each command's exit code, and whether all
    of them succeeded."""
    plugins, jobs, schedules = _names(files)
    commands = [["compile"]]
    commands += [["config", "list", p] for p in plugins]
    commands += [["run", "--dry-run", j] for j in jobs]
    commands += [["schedule", "run", s, dry] for s, dry in schedules]
    env = {
        **os.environ,
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
        "MELTANO_HUB_URL": "http://127.0.0.1:9",
        "NO_COLOR": "1",
    }
    ran: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="check-corpus-") as folder:
        root = Path(folder)
        for path, data in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
        for args in commands:
            try:
                done = subprocess.run(
                    [meltano(), *args],
                    cwd=root,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=180,
                    check=False,
                )
                rc, output = done.returncode, done.stdout + done.stderr
            except subprocess.TimeoutExpired:
                rc, output = -1, "timed out"
            ran.append({"args": args, "rc": rc, "said": _said(output) if rc else ""})
            if rc:
                break
    return {"meltano_ok": all(r["rc"] == 0 for r in ran), "commands": ran}


def _version() -> str:
    done = subprocess.run([meltano(), "--version"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _save(version: str, cases: dict[str, Any]) -> None:
    order = [c.name for c in CASES]
    ordered = {k: cases[k] for k in order if k in cases}
    EXPECTED.write_text(json.dumps({"meltano": version, "cases": ordered}, indent=1) + "\n")


def main(argv: list[str]) -> int:
    """Record every case (or the named ones) into expected.json."""
    wanted = set(argv[1:])
    record: dict[str, Any] = json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}
    cases: dict[str, Any] = record.get("cases", {})
    chosen: list[Case] = [c for c in CASES if not wanted or c.name in wanted]
    version = _version()
    for n, case in enumerate(chosen, 1):
        verdict = meltano_verdict(files_of(case))
        cases[case.name] = verdict
        said = "" if verdict["meltano_ok"] else verdict["commands"][-1]["said"]
        print(
            f"[{n}/{len(chosen)}] {case.name}: {'ok' if not said else 'FAILS'} {said}", flush=True
        )
        _save(version, cases)  # after each case: an interrupted run keeps what it did
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
