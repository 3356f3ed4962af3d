"""The page's trends: success rate, finished tasks and queue depth over the last hour, in memory.

`Trends` keeps `POINTS` buckets of `step` seconds (an hour at the default `--trends-step 60`),
so the page draws them without Prometheus. It is sampled by the poll job (daemon.py) after
each poll, from what the poll and the ledger already hold: no thread of its own, no timer.
Finished counts are deltas of the ledger's succeeded/failed counters (read only when the
ledger changed since the last sample, so an idle exporter pays one integer compare); queue
depth is the snapshot's total and deepest queue. A bucket no sample fell in stays empty
(shown as a gap, never as zero). Memory: POINTS small tuples.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from exporter.ledger import Ledger
from exporter.snapshot import Snapshot

POINTS = 60


@dataclass
class Point:
    """One bucket: [start, start + step)."""

    start: float
    succeeded: int = 0
    failed: int = 0
    depth: int | None = None  # total waiting in the broker queues, the last sample's
    depth_max: int | None = None  # the largest total sampled in this bucket
    samples: int = 0


class Trends:
    def __init__(self, step: float = 60.0, points: int = POINTS) -> None:
        self.step = step
        self.points = points
        self._lock = threading.Lock()
        self._ring: deque[Point] = deque(maxlen=points)
        self._changes = -1
        self._totals: tuple[int, int] | None = None  # cumulative (succeeded, failed)

    def sample(self, now: float, ledger: Ledger, snapshot: Snapshot) -> None:
        """Fold the current counters and queue depths into the bucket `now` falls in."""
        changes = ledger.changes
        totals = self._totals
        if changes != self._changes:
            sums = ledger.totals()
            totals, self._changes = (sums.get("succeeded", 0), sums.get("failed", 0)), changes
        depth = (
            sum(q.length or 0 for q in snapshot.queues.values())
            if snapshot.ready and snapshot.health.broker_up
            else None
        )
        with self._lock:
            point = self._bucket(now)
            if self._totals is not None and totals is not None:
                # Counters only grow; a drop (state loaded at start) is a new baseline.
                point.succeeded += max(0, totals[0] - self._totals[0])
                point.failed += max(0, totals[1] - self._totals[1])
            self._totals = totals
            if depth is not None:
                point.depth = depth
                point.depth_max = max(depth, point.depth_max or 0)
            point.samples += 1

    def _bucket(self, now: float) -> Point:
        start = now - now % self.step
        ring = self._ring
        if ring and ring[-1].start >= start:
            return ring[-1]  # (a clock that steps back writes into the newest bucket)
        ring.append(Point(start))
        return ring[-1]

    def points_since(self, now: float) -> list[Point]:
        """Copies of the buckets of the last `points * step` seconds, oldest first."""
        horizon = now - self.step * self.points
        with self._lock:
            return [
                Point(p.start, p.succeeded, p.failed, p.depth, p.depth_max, p.samples)
                for p in self._ring
                if p.start > horizon
            ]
