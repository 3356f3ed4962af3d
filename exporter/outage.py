"""A dependency that is down: `Backoff` spaces the reconnects, `OutageLog` logs the outage
once, not on every retry: the first failure at WARNING, the repeats at DEBUG, and the recovery
at INFO with how many attempts failed. Metrics carry the per-attempt detail."""

from __future__ import annotations

import logging
import threading


class OutageLog:
    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._failures = 0
        self._lock = threading.Lock()  # the API's threads share one

    def failed(self, error: object, retry_in: float | None = None) -> None:
        with self._lock:
            self._failures += 1
            first = self._failures == 1
        level = logging.WARNING if first else logging.DEBUG
        if retry_in is None:  # the caller does not retry by itself (e.g. a request failed)
            self._log.log(level, "%s: %s (logged once per outage)", self._what, error)
            return
        self._log.log(level, "%s: %s; retrying in %.1fs (logged once per outage)",
                      self._what, error, retry_in)  # fmt: skip

    def ok(self) -> None:
        with self._lock:
            failures, self._failures = self._failures, 0
        if failures:
            self._log.info("%s: back after %d failed attempts", self._what, failures)


class Backoff:
    """Reconnect delays 0.5, 1, 2 ... capped, reset after a success."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        delay = self.current
        self.current = min(self.cap, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.first

    @classmethod
    def paced(cls, interval: float) -> Backoff:
        """--retry-interval: a fixed delay when set (> 0), else the doubling default."""
        return cls(interval, interval) if interval > 0 else cls()
