"""What every task source shares: counters published as source health.

Sources count what they heard in a `SourceStats`, and publish it to
`State.update_source(name, ...)` once per batch, where the tasks collector reads it.
(The gate that keeps them from counting before the saved state is restored is the keeper's:
exporter/keeper/gate.py.)
"""

from __future__ import annotations

import threading
from collections import Counter

from exporter.state import State


class SourceStats:
    """Counters of one source; `publish` copies them into the source's health."""

    def __init__(self, state: State, name: str, enabled: bool = True) -> None:
        self.state = state
        self.name = name
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.messages = 0
        self.errors = 0
        state.update_source(name, enabled=enabled, up=False)

    def add(self, key: str, n: float = 1) -> None:
        with self._lock:
            self._counts[key] += n  # type: ignore[assignment]

    def set(self, key: str, value: float) -> None:
        with self._lock:
            self._counts[key] = value  # type: ignore[assignment]

    def add_many(self, counts: Counter[str]) -> None:
        with self._lock:
            self._counts.update(counts)

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
                "detail": {k: float(v) for k, v in self._counts.items()},
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
