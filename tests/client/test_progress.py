"""A bar on a terminal, one log line elsewhere."""

from __future__ import annotations

import io
import logging

import pytest

from client.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_a_redrawn_bar() -> None:
    stream = Terminal()
    progress = Progress("download", stream)
    for _ in range(3):
        progress.advance(1_000_000)
    progress.done("abc123")
    text = stream.getvalue()
    assert text.startswith("\rdownload: 1 files")
    assert text.endswith("download: 3 files, 3.0 MB in " + text.split(" in ")[-1])
    assert "(abc123)\n" in text


def test_pipes_get_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "meltano_forge")
    stream = io.StringIO()
    progress = Progress("download", stream)
    progress.advance(10)
    progress.done()
    assert stream.getvalue() == ""
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == [
        "download: 1 files, 0.0 MB"
    ]
