"""Task sources: each turns what it hears from Celery into `TaskUpdate`s for the ledger.

`build_sources` returns the enabled sources; the daemon starts each one's thread and schedules
its periodic jobs, and stops them on shutdown (in the order returned). The keeper of saved
state (exporter/keeper/) is not a source: the daemon starts it first and stops it last, so
its final save includes everything the sources flushed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from exporter.backend_redis import backend_client
from exporter.beat.build import beat_sources
from exporter.celery_io import CeleryIO
from exporter.celery_io.events import event_stream
from exporter.keeper.gate import StartGate
from exporter.sources.events import EventsSource
from exporter.sources.reconcile import ReconcileSource
from exporter.sources.results import ResultsSource
from exporter.state import State

log = logging.getLogger(__name__)


class Source(Protocol):
    name: str

    def start(self) -> None:
        """Start background threads (must return at once, never block on the broker)."""

    def stop(self) -> None:
        """Stop threads and close connections; idempotent."""

    def jobs(self) -> list[tuple[Callable[[], None], float, str]]:
        """Periodic jobs for the scheduler: (function, interval seconds, job id)."""


def build_sources(
    state: State,
    io: CeleryIO | None,
    gate: StartGate | None = None,
    after_reconcile: Callable[[], None] | None = None,
) -> list[Source]:
    """Events (when --events and a Celery app), pub/sub and reconcile (Redis backend).

    `gate` is the keeper's start gate (none: nothing saved to wait for, count at once);
    `after_reconcile` runs after each complete reconcile pass (the daemon: the keeper's save,
    and gcpause.settle after the first)."""
    config = state.config
    if gate is None:
        gate = StartGate()
        gate.open()
    sources: list[Any] = []
    reconcile = None
    if config.backend_url is not None:
        reconcile = ReconcileSource(state, lambda: backend_client(config), gate, after_reconcile)
    if config.events and io is not None:

        def stream(handler: Any, on_state: Any, batch_handler: Any) -> Any:
            return event_stream(
                io.app,
                config.instance_id,
                config.events_consumer,
                handler,
                on_state,
                batch_handler,
                config.retry_interval,
            )

        sources.append(EventsSource(state, stream, gate))
    if config.results_pubsub and config.backend_url is not None:
        sources.append(
            ResultsSource(
                state,
                lambda: backend_client(config, pubsub=True),
                gate,
                on_reconnect=reconcile.request_run if reconcile else None,
            )
        )
    if reconcile is not None:
        sources.append(reconcile)
    sources.extend(beat_sources(state))  # schedules of Celery beat (exporter/beat), if set
    return sources
