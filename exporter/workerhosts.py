"""Worker host names the exporter tracks: bounded, strangers last, goodbyes remembered.

Every sign of life from a worker (a heartbeat or worker-online event, a task event, an answer
to an inspect broadcast) passes here before its host name can become a series. At most
`--max-workers` hosts are tracked. Hosts confirmed by inspect (they answered a broadcast) or by
task events are preferred: a heartbeat-only host (anyone who can publish on the broker can
forge heartbeats) may be evicted to make room for a confirmed one, but a stranger never evicts
a confirmed host. What cannot be tracked is counted (`celery_exporter_workers_dropped_total`)
and logged at most once a minute.

A worker-offline event marks a tracked host down until a newer sign of life: a heartbeat, a
worker-online or a task event stamped after the goodbye (both on the worker's clock), or an
inspect answer from a poll that started after the exporter handled the goodbye (both on the
exporter's clock). Plain data under one lock; no I/O.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.clock import Clock

log = logging.getLogger(__name__)

LOG_EVERY = 60.0  # seconds between two "not tracked" log lines


@dataclass
class _Host:
    seen: float  # newest sign of life, wall-clock seconds
    confirmed: bool
    beat_at: float = 0.0  # newest heartbeat or task event stamp (the worker's clock)
    offline_at: float | None = None  # the goodbye's own timestamp (the worker's clock)
    offline_rx: float | None = None  # when the exporter handled it (the exporter's clock)


@dataclass(frozen=True)
class HostView:
    seen: float
    confirmed: bool
    offline: bool  # said goodbye (worker-offline) and showed no newer sign of life


class WorkerHosts:
    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._hosts: dict[str, _Host] = {}
        self._lock = threading.Lock()
        self.dropped = 0  # signs of life refused, plus strangers evicted
        self._unlogged = 0
        self._logged_at = float("-inf")

    # -- signs of life ------------------------------------------------------------------------
    def beat(self, host: str, when: float) -> tuple[bool, bool]:
        """A heartbeat or worker-online stamped `when`: (tracked, offline mark lifted)."""
        with self._lock:
            h = self._admit(host, confirmed=False, when=when)
            return h is not None, h is not None and self._alive(h, when)

    def task_events(self, hosts: dict[str, float]) -> tuple[set[str], bool]:
        """Hosts that ran tasks (newest event time each): (those tracked, any mark lifted)."""
        tracked: set[str] = set()
        lifted = False
        with self._lock:
            for host, when in hosts.items():
                h = self._admit(host, confirmed=True, when=when)
                if h is not None:
                    tracked.add(host)
                    lifted = self._alive(h, when) or lifted
        return tracked, lifted

    def answered(self, hosts: Iterable[str], polled_at: float) -> set[str]:
        """Hosts that answered the inspect broadcast of a poll started at `polled_at`; returns
        those tracked. An answer to a poll that started before a goodbye does not lift it."""
        tracked: set[str] = set()
        with self._lock:
            for host in hosts:
                h = self._admit(host, confirmed=True, when=polled_at)
                if h is None:
                    continue
                tracked.add(host)
                if h.offline_rx is not None and polled_at > h.offline_rx:
                    h.offline_at = h.offline_rx = None
        return tracked

    def offline(self, host: str, when: float, received: float) -> bool:
        """worker-offline stamped `when`, handled at `received`: True if the host was up.
        A goodbye from a host that is not tracked is ignored (it takes no slot)."""
        with self._lock:
            h = self._hosts.get(host)
            if h is None or when < h.beat_at:  # untracked, or a newer heartbeat came first
                return False
            if h.offline_at is not None and when <= h.offline_at:
                return False
            was_up = h.offline_at is None
            h.offline_at, h.offline_rx = when, received
            h.seen = max(h.seen, when)
            return was_up

    def forget(self, host: str) -> None:
        with self._lock:
            self._hosts.pop(host, None)

    # -- reading ------------------------------------------------------------------------------
    def view(self) -> dict[str, HostView]:
        with self._lock:
            return {
                host: HostView(h.seen, h.confirmed, h.offline_at is not None)
                for host, h in self._hosts.items()
            }

    def hosts(self) -> set[str]:
        with self._lock:
            return set(self._hosts)

    # -- under the lock -----------------------------------------------------------------------
    def _alive(self, h: _Host, when: float) -> bool:
        h.beat_at = max(h.beat_at, when)
        if h.offline_at is not None and when > h.offline_at:
            h.offline_at = h.offline_rx = None
            return True
        return False

    def _admit(self, host: str, confirmed: bool, when: float) -> _Host | None:
        h = self._hosts.get(host)
        if h is not None:
            h.confirmed = h.confirmed or confirmed
            h.seen = max(h.seen, when)
            return h
        if len(self._hosts) >= self.limit:
            stranger = self._stalest_stranger() if confirmed else None
            self._refused(stranger or host)
            if stranger is None:
                return None
            del self._hosts[stranger]
        h = self._hosts[host] = _Host(seen=when, confirmed=confirmed)
        return h

    def _stalest_stranger(self) -> str | None:
        # O(tracked hosts), but only while heartbeat-only hosts fill the table: each call
        # removes one, and strangers cannot come back in while it is full.
        strangers = ((h.seen, host) for host, h in self._hosts.items() if not h.confirmed)
        return min(strangers, default=(0.0, None))[1]

    def _refused(self, host: str) -> None:
        self.dropped += 1
        now = self._clock.monotonic()
        if now - self._logged_at < LOG_EVERY:
            self._unlogged += 1
            return
        log.warning(
            "not tracking worker host %r: --max-workers %d hosts are tracked already "
            "(%d more since the previous such line; workers that answer inspect or send "
            "task events replace heartbeat-only hosts)",
            host[:100],
            self.limit,
            self._unlogged,
        )
        self._logged_at, self._unlogged = now, 0
