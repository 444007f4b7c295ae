"""Progress for download, extraction and install: a bar on a terminal, log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("meltano_forge")


class Progress:
    """Counts files and bytes of one step; redraws at most ten times a second on a TTY."""

    def __init__(self, step: str, stream: TextIO | None = None) -> None:
        self.step = step
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.files = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._drawn = 0.0

    def advance(self, size: int) -> None:
        """One more file of `size` bytes."""
        self.files += 1
        self.bytes += size
        now = time.monotonic()
        if self.tty and now - self._drawn > 0.1:
            self._drawn = now
            self.stream.write(f"\r{self.step}: {self.files} files, {self.bytes / 1e6:.1f} MB ")
            self.stream.flush()

    def done(self, detail: str = "") -> None:
        """Finish the bar, or write the one log line a non-terminal gets."""
        elapsed = time.monotonic() - self.started
        line = f"{self.step}: {self.files} files, {self.bytes / 1e6:.1f} MB in {elapsed:.1f}s"
        if detail:
            line += f" ({detail})"
        if self.tty:
            self.stream.write("\r" + line + "\n")
            self.stream.flush()
        else:
            log.info("%s", line)
