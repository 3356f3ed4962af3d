"""Task sources: each turns what it hears from Celery into `TaskUpdate`s for the ledger.

`build_sources` returns the enabled sources; the daemon starts each one's thread and schedules
its periodic jobs, and stops them on shutdown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from exporter.celery_io import CeleryIO
from exporter.state import State


class Source(Protocol):
    name: str

    def start(self) -> None:
        """Start background threads (must return at once, never block on the broker)."""

    def stop(self) -> None:
        """Stop threads and close connections; idempotent."""

    def jobs(self) -> list[tuple[Callable[[], None], float, str]]:
        """Periodic jobs for the scheduler: (function, interval seconds, job id)."""


def build_sources(state: State, io: CeleryIO) -> list[Source]:
    # The event receiver, result pub/sub listener and reconcile job register here.
    return []
