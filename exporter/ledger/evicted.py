"""`EvictedIds`: task ids the ledger forgot while a reconcile could still count them again.

The ledger evicts entries first in, first out; an evicted id whose result settled above the
reconcile watermark is remembered here until a completed reconcile raises the watermark past
it (`prune`), so a reconcile finding that result again does not count it twice.

Bounded: at most `limit` ids are kept after each trim, and those are the newest-settled ones
(ties: the latest evicted), because the oldest are the likeliest to be covered by the next
watermark. Trims run in batches: between two trims up to `slack` more ids (a few thousand)
stay known, which only makes a recount less likely. Nothing here locks: the ledger calls it
under its own lock.

Why not a heap: at reconcile scale every new result evicts one entry, and a heap sift per
add touched ~17 scattered tuples (2.5 us per result at 1M results, a third of the fold).
Here an add is a dict insert and a list append into the bucket of its settle second; a
trim pops whole buckets oldest first and sorts only the one bucket it splits (and only if
ids arrived out of order in it), so the cost per add is amortised O(1).
"""

from __future__ import annotations

import heapq
import math

from exporter.ledger.churn import Churn

# Ids kept beyond `limit` before a trim: a few thousand, fewer for a small limit.
MAX_SLACK = 4096


class _Bucket:
    """Ids settled within one second, in arrival order unless `ordered` says it was sorted."""

    __slots__ = ("ids", "last", "ordered")

    def __init__(self, task_id: str, settled: float) -> None:
        self.ids = [task_id]
        self.last = settled  # the newest settle time in the bucket
        self.ordered = True  # ids are sorted by (settle time, arrival)


def _second(settled: float) -> int:
    try:
        return math.floor(settled)
    except (OverflowError, ValueError):  # inf or nan: at one end, never an exception
        return 1 << 62 if settled > 0 else -(1 << 62)


class EvictedIds:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # sets slack and the trim threshold too
        # id -> settle time; a plain dict, so the ledger may test membership on it directly
        # (`task_id in evicted.ids`, no Python-level call; read from here each time: a trim
        # replaces it with a copy now and then).
        self.ids: dict[str, float] = {}
        # Ids given up or pruned leave dead slots (churn.py): copied once as many have gone
        # as are kept, it is sized for the live ones.
        self._churn = Churn(limit)
        self._buckets: dict[int, _Bucket] = {}
        self._seconds: list[int] = []  # min-heap of the bucket keys
        self.given_up = 0
        self.trims = 0

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        self._limit = limit
        self.slack = min(MAX_SLACK, max(1, limit // 16))
        self._trim_at = limit + self.slack

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, task_id: str, settled: float) -> None:
        ids = self.ids
        old = ids.get(task_id)
        if old is not None:
            if old >= settled:
                return
            self._remove(task_id, old)  # evicted again, settled later (rare): move it
        ids[task_id] = settled
        second = _second(settled)
        bucket = self._buckets.get(second)
        if bucket is None:
            self._buckets[second] = _Bucket(task_id, settled)
            heapq.heappush(self._seconds, second)
        else:
            bucket.ids.append(task_id)
            if settled >= bucket.last:
                bucket.last = settled
            else:
                bucket.ordered = False
        if len(ids) >= self._trim_at:
            self.trim()

    def trim(self) -> None:
        """Give up the oldest-settled ids beyond `limit`."""
        excess = len(self.ids) - self.limit
        if excess <= 0:
            return
        self.trims += 1
        ids, buckets, seconds = self.ids, self._buckets, self._seconds
        dropped = 0
        while excess > 0 and seconds:
            second = seconds[0]
            bucket = buckets[second]
            members = bucket.ids
            if len(members) <= excess:
                heapq.heappop(seconds)
                del buckets[second]
                drop = members
            else:
                if not bucket.ordered:
                    members.sort(key=ids.__getitem__)  # stable: ties stay in arrival order
                    bucket.ordered = True
                drop = members[:excess]
                del members[:excess]
            for task_id in drop:
                del ids[task_id]
            excess -= len(drop)
            self.given_up += len(drop)
            dropped += len(drop)
        self._deleted(dropped)

    def _deleted(self, n: int) -> None:
        if self._churn.deleted(n):
            self.ids = dict(self.ids)

    def prune(self, watermark: float) -> None:
        """Forget every id settled at or below the watermark (a reconcile covers them)."""
        ids, buckets, seconds = self.ids, self._buckets, self._seconds
        dropped = 0
        while seconds and seconds[0] <= watermark:
            second = seconds[0]
            bucket = buckets[second]
            if second + 1 <= watermark:  # the whole second is covered
                heapq.heappop(seconds)
                del buckets[second]
                for task_id in bucket.ids:
                    del ids[task_id]
                dropped += len(bucket.ids)
                continue
            keep = [i for i in bucket.ids if ids[i] > watermark]
            for task_id in bucket.ids:
                if ids[task_id] <= watermark:
                    del ids[task_id]
            if keep:
                bucket.ids = keep  # a subsequence: its order (and `ordered`) still holds
            else:
                heapq.heappop(seconds)
                del buckets[second]
            break  # later buckets start at second + 1 > watermark
        self._deleted(dropped)

    def _remove(self, task_id: str, settled: float) -> None:
        second = _second(settled)
        bucket = self._buckets[second]
        bucket.ids.remove(task_id)
        del self.ids[task_id]
        if not bucket.ids:
            del self._buckets[second]
            self._seconds.remove(second)
            heapq.heapify(self._seconds)
