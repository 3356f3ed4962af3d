"""The "-E is off" check: a worker's heartbeats show tasks processed but no task event came.

Keeps a little per host, only for hosts `State.workers` tracks (the events source asks it
first and calls `retain` with the tracked set), so it stays within --max-workers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class EventsEnabledCheck:
    """Tells "-E is off": a worker's heartbeat shows tasks processed but no task event came."""

    GRACE = 5.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_task_event: dict[str, float] = {}
        self._last_beat: dict[str, tuple[float, int]] = {}
        self._off: set[str] = set()

    def task_event(self, host: str | None, now: float) -> None:
        if host:
            with self._lock:
                self._last_task_event[host] = now
                self._off.discard(host)

    def worker_event(self, kind: str, host: str | None, processed: Any, now: float) -> None:
        if not host:
            return
        with self._lock:
            if kind == "worker-offline":
                self._last_beat.pop(host, None)
                self._off.discard(host)
                return
            if isinstance(processed, bool) or not isinstance(processed, int):
                return
            previous = self._last_beat.get(host)
            self._last_beat[host] = (now, processed)
            if previous is None or processed <= previous[1]:
                return
            last = self._last_task_event.get(host)
            if last is None or last < previous[0] - self.GRACE:
                if host not in self._off:
                    log.warning(
                        "worker %r processed tasks but sent no task events: start it "
                        "with -E or use --enable-events-interval",
                        host,
                    )
                self._off.add(host)

    def retain(self, hosts: set[str]) -> None:
        """Keep only these hosts (the tracked ones): memory stays within --max-workers."""
        with self._lock:
            for memory in (self._last_task_event, self._last_beat):
                for host in set(memory) - hosts:
                    del memory[host]
            self._off &= hosts

    def enabled(self) -> bool:
        with self._lock:
            return not self._off

    def hosts_off(self) -> list[str]:
        with self._lock:
            return sorted(self._off)
