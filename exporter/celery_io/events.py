"""Celery's event receiver, run on a background thread with reconnect and backoff.

The receiver's queue is named `celeryev.celery-ops-exporter.<instance>`: stable per exporter
instance, so a restarted exporter re-declares the same queue instead of adding another.
Nothing is left behind to grow when the exporter dies (tests/integration/
test_sources_event_queue.py checks both brokers):
- RabbitMQ: Celery declares the queue exclusive and auto-delete with `x-expires`
  (`event_queue_expires`, 60 s): the broker deletes it when our connection drops.
- Redis: Celery turns the event exchange into a fanout, which kombu carries over PUBLISH, so
  events for a dead receiver are dropped by the server, never stored. Only the binding set
  `_kombu.binding.celeryev` remembers receivers: the stable name keeps our share at one
  member, and kombu 5.7 sweeps members not refreshed for max(2 x expires, 1 h).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from exporter.outage import OutageLog

log = logging.getLogger(__name__)

QUEUE_NODE_PREFIX = "celery-ops-exporter."


def queue_name(app: Any, instance: str) -> str:
    return f"{app.conf.event_queue_prefix}.{QUEUE_NODE_PREFIX}{instance}"


class EventStream:
    """Consumes Celery events and hands each (a dict with `type`) to `handler`."""

    def __init__(
        self,
        app: Any,
        instance: str,
        handler: Callable[[dict[str, Any]], None],
        on_state: Callable[[bool, str | None], None],
    ) -> None:
        self.app = app
        self.instance = instance
        self._handler = handler
        self._on_state = on_state
        self._receiver: Any = None
        self._lock = threading.Lock()

    def run(self, stop: threading.Event, backoff_first: float = 0.5, cap: float = 30.0) -> None:
        """Consume until `stop` is set; reconnect with exponential backoff on any failure."""
        delay = backoff_first
        outage = OutageLog(log, "event receiver")
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
                    outage.ok()
                    delay = backoff_first
                    # consume() checks should_stop between 1 s drains, so stop() is prompt.
                    for _ in receiver.consume(limit=None, timeout=None, wakeup=True):
                        if stop.is_set():
                            break
            except Exception as exc:  # broker blips must never kill the thread
                outage.failed(f"{type(exc).__name__}: {exc}", delay)
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
