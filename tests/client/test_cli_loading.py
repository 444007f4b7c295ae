"""The console script loads a command's module when the command runs (`client.cli`'s
`COMMAND_MODULES`): every command is still there, and `check` starts without the settings
model, the workspace or the runner, which are most of a cold start's imports."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from client.cli import COMMAND_MODULES, main

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "meltano" / "meltano-manifest"


def test_every_commands_module_is_named_with_its_commands() -> None:
    modules = set(COMMAND_MODULES.values())
    for module in modules:
        commands = importlib.import_module(f"client.cli.{module}").COMMANDS
        named = {name for name, owner in COMMAND_MODULES.items() if owner == module}
        assert {c.name for c in commands} == named, module


def test_the_group_lists_and_runs_every_command() -> None:
    with click.Context(main) as ctx:
        listed = set(main.list_commands(ctx))
        assert set(COMMAND_MODULES) <= listed
        for name in COMMAND_MODULES:
            command = main.get_command(ctx, name)
            assert command is not None
            assert command.name == name


@pytest.mark.parametrize(
    ("args", "absent"),
    [
        (["check", "--json"], {"client.settings", "pydantic_settings", "client.workspace"}),
        (["check", "--help"], {"client.settings", "client.check", "client.runner"}),
    ],
)
def test_a_command_loads_only_what_it_needs(args: list[str], absent: set[str]) -> None:
    code = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.stderr.write('MODULES ' + json.dumps(sorted(sys.modules))))\n"
        "from service.entry import main\n"
        f"sys.argv = ['meltano-forge', *{args!r}]\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=FIXTURE, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stderr.rpartition("MODULES ")[2]))
    assert not (absent & loaded), sorted(absent & loaded)
    if "--json" in args:
        assert json.loads(done.stdout)["ok"] is True
