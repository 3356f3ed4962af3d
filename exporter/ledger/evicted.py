"""`EvictedIds`: task ids the ledger forgot while a reconcile could still count them again.

The ledger evicts entries first in, first out; an evicted id whose result settled above the
reconcile watermark is remembered here until a completed reconcile raises the watermark past
it (`prune`), so a reconcile finding that result again does not count it twice.

Bounded: at most `limit` ids are kept after each trim, and those are the newest-settled ones
(ties: the latest evicted), because the oldest are the likeliest to be covered by the next
watermark. Trims run in batches: between two trims up to `slack` more ids (a few thousand)
stay known, which only makes a recount less likely. Nothing here locks: the ledger calls it
under its own lock.

No object per id. An id is remembered by its `key`, `hash(id)` cut to 60 bits, in a set of
ints (a 32 B int and a set slot each: the ledger tests `key(id) in evicted.keys` with no
Python-level call), and in the bucket of its settle second: the keys and settle times as
machine words in two arrays. The id's string is freed at eviction, so the next id read
reuses its memory. Keeping the strings (and a float per id) instead left 14.4 MB of free
blocks among the live entries once a reconcile pruned them all (bench/RESULTS.md, "Evicted
ids without objects"). Two ids with one key are one id here: a chance of about 1 in 10^13 per
lookup at 100,000 ids, and not one an outsider can aim at (Python's string hash is keyed
per process, unless PYTHONHASHSEED is fixed).

Why buckets and not a heap: at reconcile scale every new result evicts one entry, and a heap
sift per add touched ~17 scattered tuples (2.5 us per result at 1M results). Here an add is
a set insert and two array appends into the bucket of its settle second; a trim pops whole
buckets oldest first and cuts the one it splits with a C-level slice (sorting it first only
if its ids arrived out of order), so the cost per add is amortised O(1).
"""

from __future__ import annotations

import heapq
import math
from array import array

# Ids kept beyond `limit` before a trim: a few thousand, fewer for a small limit.
MAX_SLACK = 4096
KEY_MASK = (1 << 60) - 1  # (an int below 2^60 is pymalloc's 32 B class; 2^60 and up 48 B)


def key(task_id: object) -> int:
    """The key an id is remembered by (see the module docstring)."""
    return hash(task_id) & KEY_MASK


class _Bucket:
    """Keys settled within one second with their settle times, in arrival order unless
    `ordered` says they were sorted."""

    __slots__ = ("keys", "last", "ordered", "times")

    def __init__(self, k: int, settled: float) -> None:
        self.keys = array("q", (k,))
        self.times = array("d", (settled,))
        self.last = settled  # the newest settle time in the bucket
        self.ordered = True  # sorted by (settle time, arrival)

    def sort(self) -> None:
        times = self.times
        order = sorted(range(len(times)), key=times.__getitem__)  # stable: ties keep arrival
        self.keys = array("q", map(self.keys.__getitem__, order))
        self.times = array("d", map(times.__getitem__, order))
        self.ordered = True


def _second(settled: float) -> int:
    try:
        return math.floor(settled)
    except (OverflowError, ValueError):  # inf or nan: at one end, never an exception
        return 1 << 62 if settled > 0 else -(1 << 62)


class EvictedIds:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # sets slack and the trim threshold too
        # The keys of the ids remembered; the ledger tests membership on it directly
        # (`key(task_id) in evicted.keys`; read from here each time).
        self.keys: set[int] = set()
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
        return task_id is not None and hash(task_id) & KEY_MASK in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    def settled(self, task_id: object) -> float | None:
        """When a remembered id settled (None: not remembered). A scan: tests and re-adds."""
        k = key(task_id)
        if k not in self.keys:
            return None
        for bucket in self._buckets.values():
            if k in bucket.keys:
                return bucket.times[bucket.keys.index(k)]
        return None  # (unreachable: every key is in one bucket)

    def add(self, task_id: str, settled: float) -> None:
        self.add_key(hash(task_id) & KEY_MASK, settled)

    def add_key(self, k: int, settled: float) -> None:
        """Remember an id by its key (`key(id)`: what the cold store keeps, cold.py)."""
        keys = self.keys
        if k in keys and not self._moved(k, settled):
            return
        keys.add(k)
        second = _second(settled)
        bucket = self._buckets.get(second)
        if bucket is None:
            self._buckets[second] = _Bucket(k, settled)
            heapq.heappush(self._seconds, second)
        else:
            bucket.keys.append(k)
            bucket.times.append(settled)
            if settled >= bucket.last:
                bucket.last = settled
            else:
                bucket.ordered = False
        if len(keys) >= self._trim_at:
            self.trim()

    def trim(self) -> None:
        """Give up the oldest-settled ids beyond `limit`."""
        excess = len(self.keys) - self.limit
        if excess <= 0:
            return
        self.trims += 1
        keys, buckets, seconds = self.keys, self._buckets, self._seconds
        while excess > 0 and seconds:
            second = seconds[0]
            bucket = buckets[second]
            if len(bucket.keys) <= excess:
                heapq.heappop(seconds)
                del buckets[second]
                drop = bucket.keys
            else:
                if not bucket.ordered:
                    bucket.sort()
                drop = bucket.keys[:excess]
                del bucket.keys[:excess]
                del bucket.times[:excess]
            keys.difference_update(drop)
            excess -= len(drop)
            self.given_up += len(drop)

    def prune(self, watermark: float) -> None:
        """Forget every id settled at or below the watermark (a reconcile covers them)."""
        keys, buckets, seconds = self.keys, self._buckets, self._seconds
        while seconds and seconds[0] <= watermark:
            second = seconds[0]
            bucket = buckets[second]
            if second + 1 <= watermark:  # the whole second is covered
                heapq.heappop(seconds)
                del buckets[second]
                keys.difference_update(bucket.keys)
                continue
            kept = [i for i, at in enumerate(bucket.times) if at > watermark]
            keys.difference_update(
                k for k, at in zip(bucket.keys, bucket.times, strict=True) if not at > watermark
            )
            if kept:  # a subsequence: its order (and `ordered`) still holds
                bucket.keys = array("q", map(bucket.keys.__getitem__, kept))
                bucket.times = array("d", map(bucket.times.__getitem__, kept))
            else:
                heapq.heappop(seconds)
                del buckets[second]
            break  # later buckets start at second + 1 > watermark
        if not keys:
            self.keys = set()  # (a set keeps its largest table: give it back)

    def _moved(self, k: int, settled: float) -> bool:
        """A remembered key evicted again: True (and removed) when it settled later now.
        Rare (a live update re-creates an entry a reconcile had evicted): a C-level scan."""
        for second, bucket in self._buckets.items():
            if k not in bucket.keys:
                continue
            i = bucket.keys.index(k)
            if bucket.times[i] >= settled:
                return False
            del bucket.keys[i]
            del bucket.times[i]
            if not bucket.keys:
                del self._buckets[second]
                self._seconds.remove(second)
                heapq.heapify(self._seconds)
            self.keys.discard(k)
            return True
        return True  # (unreachable: every key is in one bucket)
