"""Counters of the side API (requests, plans, actions), kept per `State` for the API collector.

They live beside the state rather than on it so the API stays a self-contained add-on: the
router and the executor count here, `exporter.collectors.api` renders the numbers.
"""

from __future__ import annotations

import threading
import weakref
from collections import defaultdict

from exporter.state import State


class ApiStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.version = 0  # bumped by every change: part of the /metrics change token
        self._requests: dict[tuple[str, str], int] = defaultdict(int)
        self._plans: dict[str, int] = defaultdict(int)
        self._actions: dict[tuple[str, str], int] = defaultdict(int)
        self._refused: dict[str, int] = defaultdict(int)
        self._overloaded = 0
        self._unaudited = 0

    def request(self, endpoint: str, code: int) -> None:
        with self._lock:
            self.version += 1
            self._requests[(endpoint, str(code))] += 1

    def plan(self, outcome: str) -> None:
        with self._lock:
            self.version += 1
            self._plans[outcome] += 1

    def action(self, action: str, outcome: str) -> None:
        with self._lock:
            self.version += 1
            self._actions[(action, outcome)] += 1

    def refused(self, reason: str) -> None:
        with self._lock:
            self.version += 1
            self._refused[reason] += 1

    def overloaded(self) -> None:
        with self._lock:
            self.version += 1
            self._overloaded += 1

    def unaudited(self) -> None:
        with self._lock:
            self.version += 1
            self._unaudited += 1

    def bounds(self) -> tuple[dict[str, int], int, int]:
        """(refusals by reason, requests refused by --api-max-concurrent, refusals not audited)."""
        with self._lock:
            return dict(self._refused), self._overloaded, self._unaudited

    def copy(
        self,
    ) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[tuple[str, str], int]]:
        with self._lock:
            return dict(self._requests), dict(self._plans), dict(self._actions)


_STATS: weakref.WeakKeyDictionary[State, ApiStats] = weakref.WeakKeyDictionary()
_STATS_LOCK = threading.Lock()


def stats_for(state: State) -> ApiStats:
    """The one ApiStats of this state (created on first use)."""
    with _STATS_LOCK:
        stats = _STATS.get(state)
        if stats is None:
            stats = _STATS[state] = ApiStats()
            state.watch_changes(lambda: stats.version)
        return stats
