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
Here an add is a dict insert and appends into the bucket of its settle second; a trim pops
whole buckets oldest first and sorts only the one bucket it splits (and only if ids arrived
out of order in it), so the cost per add is amortised O(1).

Layout: a reconcile pass evicts and remembers ids all through the pass, and its end prunes
them all. Kept as objects (the id string, its settle float), they sat among the entries made
meanwhile, and pruning them left 13.6 MB of free blocks in pymalloc pools that the live
entries keep (after a 1M-result pass, bench/ledger_memory.py --parts). So an id is kept as
its text in its bucket's `bytearray` and its settle time in an `array('d')` (one buffer
per bucket: outside pymalloc once it holds a few dozen ids), found through a dict keyed by
the id's hash (`hash(id) & MASK`, 60 bits): one small int object per id, the only one. A
hash shared with a remembered id of other text (one chance in ~10^13 per add at the bound) is
not remembered and counts as given up, as a trim would.
"""

from __future__ import annotations

import heapq
import math
from array import array

from exporter.ledger.churn import Churn

# Ids kept beyond `limit` before a trim: a few thousand, fewer for a small limit.
MAX_SLACK = 4096
MASK = (1 << 60) - 1  # an int of 60 bits takes 32 B, one of 64 bits 48 B


def _text(task_id: str) -> bytes:
    return task_id.encode("utf-8", "surrogatepass")


class _Bucket:
    """Ids settled within one second, in arrival order unless `ordered` says it was sorted:
    `keys[i]` (the dict's key), settle time `times[i]`, text `blob[ends[i - 1]:ends[i]]`."""

    __slots__ = ("blob", "ends", "keys", "last", "ordered", "times")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.times = array("d")
        self.blob = bytearray()
        self.ends = array("Q")
        self.last = -math.inf  # the newest settle time in the bucket
        self.ordered = True  # ids are sorted by (settle time, arrival)

    def text(self, i: int) -> bytes:
        return bytes(self.blob[self.ends[i - 1] if i else 0 : self.ends[i]])

    def keep(self, chosen: list[int]) -> None:
        """Keep only the ids at these indexes, in this order."""
        keys, times, ends, blob = self.keys, self.times, self.ends, self.blob
        self.keys = [keys[i] for i in chosen]
        self.times = array("d", [times[i] for i in chosen])
        self.blob = bytearray()
        self.ends = array("Q")
        for i in chosen:
            self.blob += blob[ends[i - 1] if i else 0 : ends[i]]
            self.ends.append(len(self.blob))


def _second(settled: float) -> int:
    try:
        return math.floor(settled)
    except (OverflowError, ValueError):  # inf or nan: at one end, never an exception
        return 1 << 62 if settled > 0 else -(1 << 62)


class EvictedIds:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # sets slack and the trim threshold too
        # hash(id) & MASK -> the bucket that holds the id, where `in` checks its text. Hot
        # callers test `hash(id) & MASK in keys` first (a C-level miss: almost every id a
        # pass reads), then `in`; read from here each time: a trim replaces it with a copy.
        self.keys: dict[int, _Bucket] = {}
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
        bucket = self.keys.get(hash(task_id) & MASK)
        return bucket is not None and self._find(bucket, task_id) is not None

    def __len__(self) -> int:
        return len(self.keys)

    def as_dict(self) -> dict[str, float]:
        """id -> settle time of every id kept (a copy, for tests and checks)."""
        out: dict[str, float] = {}
        for bucket in self._buckets.values():
            for i, when in enumerate(bucket.times):
                out[bucket.text(i).decode("utf-8", "surrogatepass")] = when
        return out

    @staticmethod
    def _find(bucket: _Bucket, task_id: object) -> int | None:
        if task_id.__class__ is not str:
            return None
        i = bucket.keys.index(hash(task_id) & MASK)
        return i if bucket.text(i) == _text(task_id) else None

    def add(self, task_id: str, settled: float) -> None:
        key = hash(task_id) & MASK
        held = self.keys.get(key)
        if held is not None:
            i = self._find(held, task_id)
            if i is None:  # another id with this hash: not remembered (see above)
                self.given_up += 1
                return
            if held.times[i] >= settled:
                return
            self._remove(held, i)  # evicted again, settled later (rare): move it
        second = _second(settled)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = _Bucket()
            heapq.heappush(self._seconds, second)
        # (bucket.append inline: this runs once per result a reconcile evicts)
        bucket.keys.append(key)
        bucket.times.append(settled)
        blob = bucket.blob
        blob += task_id.encode("utf-8", "surrogatepass")
        bucket.ends.append(len(blob))
        if settled >= bucket.last:
            bucket.last = settled
        else:
            bucket.ordered = False
        self.keys[key] = bucket
        if len(self.keys) >= self._trim_at:
            self.trim()

    def trim(self) -> None:
        """Give up the oldest-settled ids beyond `limit`."""
        excess = len(self.keys) - self.limit
        if excess <= 0:
            return
        self.trims += 1
        keys, buckets, seconds = self.keys, self._buckets, self._seconds
        dropped = 0
        while excess > 0 and seconds:
            second = seconds[0]
            bucket = buckets[second]
            if len(bucket.keys) <= excess:
                heapq.heappop(seconds)
                del buckets[second]
                drop = bucket.keys
            else:
                if not bucket.ordered:  # stable: ties stay in arrival order
                    times = bucket.times
                    bucket.keep(sorted(range(len(times)), key=times.__getitem__))
                    bucket.ordered = True
                drop = bucket.keys[:excess]
                bucket.keep(list(range(excess, len(bucket.keys))))
            for key in drop:
                del keys[key]
            excess -= len(drop)
            self.given_up += len(drop)
            dropped += len(drop)
        self._deleted(dropped)

    def _deleted(self, n: int) -> None:
        if self._churn.deleted(n):
            self.keys = dict(self.keys)

    def prune(self, watermark: float) -> None:
        """Forget every id settled at or below the watermark (a reconcile covers them)."""
        keys, buckets, seconds = self.keys, self._buckets, self._seconds
        dropped = 0
        while seconds and seconds[0] <= watermark:
            second = seconds[0]
            bucket = buckets[second]
            if second + 1 <= watermark:  # the whole second is covered
                heapq.heappop(seconds)
                del buckets[second]
                for key in bucket.keys:
                    del keys[key]
                dropped += len(bucket.keys)
                continue
            times = bucket.times
            kept = [i for i in range(len(times)) if times[i] > watermark]
            for i in range(len(times)):
                if times[i] <= watermark:
                    del keys[bucket.keys[i]]
            if kept:
                bucket.keep(kept)  # a subsequence: its order (and `ordered`) still holds
            else:
                heapq.heappop(seconds)
                del buckets[second]
            break  # later buckets start at second + 1 > watermark
        self._deleted(dropped)

    def _remove(self, bucket: _Bucket, i: int) -> None:
        del self.keys[bucket.keys[i]]
        second = _second(bucket.times[i])
        bucket.keep([j for j in range(len(bucket.keys)) if j != i])
        if not bucket.keys:
            del self._buckets[second]
            self._seconds.remove(second)
            heapq.heapify(self._seconds)
