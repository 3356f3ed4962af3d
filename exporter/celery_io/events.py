"""Celery's event receiver, run on a background thread with reconnect and backoff.

The receiver's queue is named `celeryev.celery-ops-exporter.<instance>`: stable per exporter
instance, so a restarted exporter consumes the same queue instead of leaving one behind.
It is declared auto-delete with `x-expires` (`event_queue_expires`, 60 s by default), so on
RabbitMQ a dead exporter's queue disappears; on Redis the queue is a list whose binding
kombu (5.7+) sweeps once no consumer refreshed it for max(2 x expires, 1 h), and which the
restarted exporter drains because the name is the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

QUEUE_NODE_PREFIX = "celery-ops-exporter."


def queue_name(app: Any, instance: str) -> str:
    return f"{app.conf.event_queue_prefix}.{QUEUE_NODE_PREFIX}{instance}"


class EventStream:
    """Consumes Celery events and hands each (a dict with `type`) to `handler`."""

    def __init__(self, app: Any, instance: str, handler: Callable[[dict[str, Any]], None],
                 on_state: Callable[[bool, str | None], None]) -> None:  # fmt: skip
        self.app = app
        self.instance = instance
        self._handler = handler
        self._on_state = on_state
        self._receiver: Any = None
        self._lock = threading.Lock()

    def run(self, stop: threading.Event, backoff_first: float = 0.5, cap: float = 30.0) -> None:
        """Consume until `stop` is set; reconnect with exponential backoff on any failure."""
        delay = backoff_first
        while not stop.is_set():
            try:
                with self.app.connection_for_read() as conn:
                    conn.ensure_connection(max_retries=1)
                    receiver = self.app.events.Receiver(
                        conn,
                        handlers={"*": self._handler},
                        node_id=QUEUE_NODE_PREFIX + self.instance,
                    )
                    with self._lock:
                        self._receiver = receiver
                    if stop.is_set():
                        break
                    self._on_state(True, None)
                    delay = backoff_first
                    # consume() checks should_stop between 1 s drains, so stop() is prompt.
                    for _ in receiver.consume(limit=None, timeout=None, wakeup=True):
                        if stop.is_set():
                            break
            except Exception as exc:  # broker blips must never kill the thread
                log.warning("event receiver: %s: %s; reconnecting in %.1fs",
                            type(exc).__name__, exc, delay)  # fmt: skip
                self._on_state(False, f"{type(exc).__name__}: {exc}")
                stop.wait(delay)
                delay = min(cap, delay * 2)
            finally:
                with self._lock:
                    self._receiver = None
        self._on_state(False, None)

    def stop(self) -> None:
        with self._lock:
            if self._receiver is not None:
                self._receiver.should_stop = True

    def enable_events(self) -> None:
        """Broadcast `enable_events` so workers started without -E send task events."""
        self.app.control.enable_events()
