"""Task sources: each turns what it hears from Celery into `TaskUpdate`s for the ledger.

`build_sources` returns the enabled sources; the daemon starts each one's thread and schedules
its periodic jobs, and stops them on shutdown (in the order returned; the ledger saver last,
so its final save includes everything the others flushed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from exporter.celery_io import CeleryIO
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


def build_sources(state: State, io: CeleryIO | None) -> list[Source]:
    """Events (when --events and a Celery app), pub/sub and reconcile (Redis backend)."""
    from exporter.beat.build import beat_sources
    from exporter.ledger_store import LedgerStore
    from exporter.sources.base import Boot
    from exporter.sources.inspect_names import InspectNames
    from exporter.sources.persist import PersistSource
    from exporter.sources.reconcile import ReconcileSource
    from exporter.sources.redisconn import backend_client
    from exporter.sources.results import ResultsSource

    config = state.config
    boot = Boot()
    sources: list[Any] = []
    store = None
    reconcile = None
    if config.backend_url is not None:
        store = LedgerStore(backend_client(config), config.global_keyprefix, config.instance_id)
        reconcile = ReconcileSource(state, lambda: backend_client(config), boot, store)
    else:
        # Nothing to restore from: live sources may count at once.
        boot.loaded.set()
        boot.reconciled.set()
        log.warning(
            "no Redis result backend: task counts come from events only and restart "
            "from zero when the exporter restarts"
        )
    if config.events and io is not None:
        from exporter.celery_io.events import event_stream
        from exporter.sources.events import EventsSource

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

        sources.append(EventsSource(state, stream, boot))
    if config.results_pubsub and config.backend_url is not None:
        sources.append(
            ResultsSource(
                state,
                lambda: backend_client(config, pubsub=True),
                boot,
                on_reconnect=reconcile.request_run if reconcile else None,
            )
        )
    if reconcile is not None:
        sources.append(reconcile)
    sources.append(InspectNames(state))
    sources.extend(beat_sources(state))  # schedules of Celery beat (exporter/beat), if set
    if store is not None:
        sources.append(PersistSource(state, store, boot))
    return sources
