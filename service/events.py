"""In-process event broker for Server-Sent Events: branch moved, redeploy requested."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from providers.redaction import redact


class EventBroker:
    """Fan-out of events to subscribers; publishing is safe from any thread."""

    def __init__(self) -> None:
        self._subscribers: list[
            tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]], str | None]
        ] = []
        self._lock = threading.Lock()

    def publish(self, event: dict[str, Any]) -> None:
        """Send an event to every subscriber of its project."""
        with self._lock:
            targets = list(self._subscribers)
        for loop, queue, project in targets:
            if project is None or project == event.get("project"):
                loop.call_soon_threadsafe(queue.put_nowait, event)

    async def stream(
        self,
        project: str | None,
        heartbeat: float = 15.0,
        allowed: Callable[[], bool] | None = None,
    ) -> AsyncIterator[str]:
        """SSE frames for one subscriber, with comment heartbeats. `allowed` is asked
        before every frame: a token revoked while its stream is open loses the stream at
        the next event or heartbeat, as it loses every other request."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        entry = (asyncio.get_running_loop(), queue, project)
        with self._lock:
            self._subscribers.append(entry)
        try:
            yield ": connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), heartbeat)
                except TimeoutError:
                    if allowed is not None and not allowed():
                        return
                    yield ": heartbeat\n\n"
                    continue
                if allowed is not None and not allowed():
                    return
                data = redact(json.dumps(event, sort_keys=True))  # one redaction point
                yield f"event: {event.get('type', 'message')}\ndata: {data}\n\n"
        finally:
            with self._lock:
                self._subscribers.remove(entry)
