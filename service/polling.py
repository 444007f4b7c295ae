"""The background loop of the service's workers (redeploy deliveries, checks): a pass at a
time in a daemon thread; a pass that found nothing waits `interval`, and a database that
cannot be reached, or any other failure of a pass, is logged and waited out, never the end
of the loop."""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa

log = logging.getLogger(__name__)


class PollingWorker:
    """Runs `run_once` until `stop`; subclasses say what a pass does."""

    interval: float
    what: str
    """The worker's name, for the thread and the log ('outbox', 'checks')."""

    def __init__(self, interval: float, what: str) -> None:
        self.interval, self.what = interval, what
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One pass; how much it did (0 lets the loop wait)."""
        raise NotImplementedError

    def start(self) -> None:
        """Run passes in a background thread until `stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    busy = self.run_once()
                except sa.exc.SQLAlchemyError:
                    log.exception("the %s worker could not reach the database", self.what)
                    busy = 0
                except Exception:
                    log.exception("a pass of the %s worker failed", self.what)
                    busy = 0
                if not busy:
                    self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name=self.what, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, letting a pass under way finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
