"""What every task source shares: counters published as source health.

Sources count each batch in a `Tally`, add it to their `SourceStats`, and publish the totals
as typed `SourceStatistics` to `State.update_source(name, ...)` once per batch, where the
source-stats collector and the sitrep read them.
(The gate that keeps them from counting before the saved state is restored is the keeper's:
exporter/keeper/gate.py.)
"""

from __future__ import annotations

import threading
from collections import Counter

from exporter.state import SourceStatistics, State


class Tally:
    """What one batch of a source counted, before it is added to the source's totals (the
    per-message path only touches these plain fields and counters)."""

    __slots__ = ("events", "keys_scanned", "parse_errors", "received", "skipped")

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()  # by event type
        self.skipped: Counter[str] = Counter()  # by reason
        self.parse_errors = 0
        self.received = 0
        self.keys_scanned = 0

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n


class SourceStats:
    """Counters of one source; `publish` copies them, typed, into the source's health."""

    def __init__(self, state: State, name: str, enabled: bool = True) -> None:
        self.state = state
        self.name = name
        self._lock = threading.Lock()
        self._totals = Tally()
        self._enable_events_errors = 0
        self._task_events_enabled = True
        self._runs = 0
        self._duration_total = 0.0
        self._last_duration: float | None = None
        self.messages = 0
        self.errors = 0
        state.update_source(name, enabled=enabled, up=False)

    def add(self, tally: Tally) -> None:
        """Add one batch's counts to the totals."""
        with self._lock:
            t = self._totals
            t.events.update(tally.events)
            t.skipped.update(tally.skipped)
            t.parse_errors += tally.parse_errors
            t.received += tally.received
            t.keys_scanned += tally.keys_scanned

    def enable_events_failed(self) -> None:
        with self._lock:
            self._enable_events_errors += 1

    def task_events_enabled(self, enabled: bool) -> None:
        with self._lock:
            self._task_events_enabled = enabled

    def pass_completed(self, duration: float) -> None:
        """A reconcile pass completed in `duration` seconds."""
        with self._lock:
            self._runs += 1
            self._duration_total += duration
            self._last_duration = duration

    def _statistics(self) -> SourceStatistics:
        t = self._totals
        return SourceStatistics(
            events=dict(t.events),
            skipped=dict(t.skipped),
            parse_errors=t.parse_errors,
            received=t.received,
            enable_events_errors=self._enable_events_errors,
            task_events_enabled=self._task_events_enabled,
            runs=self._runs,
            keys_scanned=t.keys_scanned,
            duration_seconds_total=self._duration_total,
            last_duration_seconds=self._last_duration,
        )

    def publish(
        self,
        *,
        messages: int = 0,
        up: bool | None = None,
        error: str | None = None,
        message_at: float | None = None,
    ) -> None:
        with self._lock:
            self.messages += messages
            changes: dict[str, object] = {
                "messages_total": self.messages,
                "stats": self._statistics(),
            }
        if up is not None:
            changes["up"] = up
        if error is not None:
            self.errors += 1
            changes["last_error"] = error
            changes["errors_total"] = self.errors
        if message_at is not None:
            changes["last_message_at"] = message_at
        self.state.update_source(self.name, **changes)
