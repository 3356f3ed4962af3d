"""Counters of the side API and its fix-it workflow: requests, auth refusals, plans, actions.

One `ApiCounters` per daemon, owned by its `State` (`state.attached(ApiCounters)`), so its
`version` moves the /metrics change token. It sits below `api/` so that every layer that
counts can reach it without importing the API: the router, gate and refusal log (api/), the
executor (remediation/), and `collectors/api.py`, which renders the numbers.
"""

from __future__ import annotations

import threading
from collections import defaultdict

# Why a request was refused with 401/403: label values of celery_exporter_api_refused_total.
DISABLED = "disabled"  # no token of the needed kind is configured (403)
MISSING = "missing_token"  # 401
INVALID = "invalid_token"  # 401
ROLE = "insufficient_role"  # a viewer token on an operator endpoint (403)
REFUSAL_REASONS = (DISABLED, MISSING, INVALID, ROLE)


class ApiCounters:
    """Every counter of the side API; thread-safe, `version` bumped by every change."""

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
