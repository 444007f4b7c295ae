"""Running the user's command (and Meltano's installer) as a child: output streamed as it
comes, SIGTERM and SIGINT forwarded, so a container's stop reaches Meltano."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)
KEEP_LINES = 200
"""Output lines remembered for an error report."""


PR_SET_DUMPABLE = 4


def undumpable() -> None:
    """Make this process undumpable before it starts a child (Linux `prctl`).

    The child's environment holds no credential (`runner.child_environment`), but ours
    does, and a child of the same user could read it from `/proc/<our pid>/environ`, or
    attach to us with ptrace. An undumpable process's `/proc` files belong to root and it
    cannot be traced by its own user. A child is dumpable again (execve resets it), so
    Meltano and its plugins are unaffected."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("could not make meltano-forge undumpable: the command may read its memory")


def run_child(
    cmd: Sequence[str],
    cwd: Path,
    env: dict[str, str],
    *,
    quiet_stdout: bool = False,
    capture: list[str] | None = None,
) -> int:
    """Run CMD streaming its output (to stderr when stdout is reserved for `--json`),
    forwarding SIGTERM and SIGINT; return its exit code. With `capture`, the output also
    goes through us, and its last lines are kept there."""
    sink = sys.stderr if quiet_stdout else sys.stdout
    direct = sys.stderr if quiet_stdout else None
    undumpable()
    try:
        child = subprocess.Popen(  # noqa: S603 - the user's own command
            list(cmd),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE if capture is not None else direct,
            stderr=subprocess.STDOUT if capture is not None else None,
            text=capture is not None,
            errors="replace",
        )
    except FileNotFoundError:
        log.error("command not found: %s", cmd[0])  # noqa: TRY400 - one clear line, no traceback
        return 127
    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, forward)
    try:
        if capture is not None and child.stdout is not None:
            with child.stdout:
                for line in child.stdout:
                    sink.write(line)
                    sink.flush()
                    capture.append(line)
                    del capture[:-KEEP_LINES]
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
