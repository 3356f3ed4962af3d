"""EvictedIds: bounded, keeps the newest-settled ids at each trim, pruned by the watermark, and
the ledger built on it never counts a result twice after its entry was evicted."""

from __future__ import annotations

import random
import sys

from exporter.clock import FakeClock
from exporter.ledger import RECONCILE_MARGIN, Ledger
from exporter.ledger.evicted import EvictedIds, key
from exporter.taskdata import SOURCE_PUBSUB, SOURCE_RECONCILE, SUCCESS, TaskUpdate


class Model:
    """The specification, one id at a time: id -> (settled, arrival); a trim keeps the
    `limit` largest (settled, arrival) pairs; a prune drops everything at or below W."""

    def __init__(self, limit: int, slack: int) -> None:
        self.limit, self.slack = limit, slack
        self.items: dict[str, tuple[float, int]] = {}
        self.arrivals = 0

    def add(self, task_id: str, settled: float) -> None:
        self.arrivals += 1
        old = self.items.get(task_id)
        if old is not None and old[0] >= settled:
            return
        self.items[task_id] = (settled, self.arrivals)
        if len(self.items) >= self.limit + self.slack:
            kept = sorted(self.items.items(), key=lambda kv: kv[1])[-self.limit :]
            self.items = dict(kept)

    def prune(self, watermark: float) -> None:
        self.items = {k: v for k, v in self.items.items() if v[0] > watermark}


_NAMES: dict[int, dict[int, str]] = {}


def _contents(evicted: EvictedIds, n: int = 150) -> dict[str, float]:
    """The ids of t0..t{n-1} remembered, with their settle times; no other key is kept."""
    names = _NAMES.get(n) or _NAMES.setdefault(n, {key(f"t{i}"): f"t{i}" for i in range(n)})
    times = {
        k: at for b in evicted._buckets.values() for k, at in zip(b.keys, b.times, strict=True)
    }
    assert set(times) == evicted.keys and len(times) == len(evicted)  # each key in one bucket
    return {names[k]: at for k, at in times.items()}


def test_matches_the_one_at_a_time_model() -> None:
    rng = random.Random(7)
    for round_ in range(300):
        limit = rng.choice([1, 3, 20, 64])
        fast = EvictedIds(limit)
        model = Model(limit, fast.slack)
        # Few distinct seconds and fractions, so buckets hold ties and out-of-order ids.
        for _ in range(300):
            roll = rng.random()
            if roll < 0.9:
                settled = rng.randrange(40) + rng.choice([0.0, 0.25, 0.5, 0.75])
                task_id = f"t{rng.randrange(150)}"
                fast.add(task_id, settled)
                model.add(task_id, settled)
            else:
                watermark = rng.randrange(40) + rng.choice([0.0, 0.5, 0.99])
                fast.prune(watermark)
                model.prune(watermark)
            assert _contents(fast) == {k: v[0] for k, v in model.items.items()}, round_
            assert len(fast) < limit + fast.slack


def test_bounded_and_keeps_the_newest_settled() -> None:
    evicted = EvictedIds(1000)
    assert evicted.slack == 62
    ids = [f"t{i}" for i in range(10_000)]
    settled = {
        task_id: float(random.Random(3).randrange(10**6)) + i / 10**5
        for i, task_id in enumerate(ids)
    }
    for task_id in ids:
        evicted.add(task_id, settled[task_id])
        assert len(evicted) < 1000 + evicted.slack
    evicted.trim()
    assert len(evicted) == 1000
    newest = sorted(ids, key=settled.__getitem__)[-1000:]
    assert set(_contents(evicted, 10_000)) == set(newest)
    assert evicted.given_up == 9000


def test_same_settle_time_keeps_the_latest_evicted() -> None:
    """A whole backend dated alike (one second): arrival order decides, in O(1) per add."""
    evicted = EvictedIds(100)
    for i in range(1000):
        evicted.add(f"t{i}", 5.0)
    evicted.trim()
    assert set(_contents(evicted, 1000)) == {f"t{i}" for i in range(900, 1000)}


def test_prune_by_watermark_and_odd_times() -> None:
    evicted = EvictedIds(100)
    for i, when in enumerate([1.0, 1.5, 2.0, 2.5, -3.5, float("inf"), float("nan")]):
        evicted.add(f"t{i}", when)
    evicted.prune(1.5)
    assert "t0" not in evicted and "t1" not in evicted and "t4" not in evicted
    assert {"t2", "t3", "t5"} <= set(_contents(evicted, 7))
    evicted.prune(2.0)
    assert "t2" not in evicted and "t3" in evicted


def test_evicted_again_later_moves_the_id() -> None:
    evicted = EvictedIds(10)
    evicted.add("a", 1.0)
    evicted.add("a", 0.5)  # older news changes nothing
    assert evicted.settled("a") == 1.0 and len(evicted) == 1
    evicted.add("a", 7.0)
    evicted.prune(2.0)
    assert evicted.settled("a") == 7.0 and len(evicted) == 1
    evicted.prune(7.0)
    assert len(evicted) == 0


def test_a_duplicate_after_eviction_is_not_counted_twice() -> None:
    """Reconcile results, each re-read after its entry was evicted: every one counts once,
    and so does a late pub/sub copy of a result the ledger still holds."""
    clock = FakeClock()
    ledger = Ledger(clock=clock, max_tasks=50)
    ledger.expect_backfill()
    rng = random.Random(11)
    ids = [f"r{i}" for i in range(2000)]
    date = {i: 1.7e9 + rng.randrange(5000) + rng.random() for i in ids}
    counted = 0
    for task_id in ids:
        counted += ledger.apply(
            TaskUpdate(task_id, SUCCESS, SOURCE_RECONCILE, timestamp=date[task_id])
        )
    # The same results again (SCAN may return a key twice; a pass may be retried): at most
    # limit + slack ids are remembered, so re-read the newest-settled ones, which are kept.
    newest = sorted(ids, key=date.__getitem__)[-ledger._tables.evicted.limit :]
    for task_id in newest:
        counted += ledger.apply(
            TaskUpdate(task_id, SUCCESS, SOURCE_RECONCILE, timestamp=date[task_id])
        )
    assert counted == 2000
    assert not ledger.apply(TaskUpdate(ids[-1], SUCCESS, SOURCE_PUBSUB))
    assert len(ledger._tables.evicted) < ledger._tables.evicted.limit + ledger._tables.evicted.slack
    # A completed reconcile covers them all: nothing need be remembered.
    clock.advance(1.7e9 + 5000 + RECONCILE_MARGIN + 1 - clock.time())
    ledger.reconcile_completed(clock.time())
    assert len(ledger._tables.evicted) == 0
    assert not ledger.apply(TaskUpdate(ids[0], SUCCESS, SOURCE_RECONCILE, timestamp=date[ids[0]]))


def test_no_object_kept_per_id() -> None:
    """An id is remembered by a 60-bit key, not by its string: the string can be freed."""
    evicted = EvictedIds(1000)
    task_id = "".join(["c0ffee", "-id"])  # (built at run time: not an interned constant)
    evicted.add(task_id, 3.0)
    assert all(type(k) is int and 0 <= k < 1 << 60 for k in evicted.keys)
    assert sys.getrefcount(task_id) == 2  # this frame's name and the call's argument
    assert "".join(["c0ffee", "-id"]) in evicted and None not in evicted
    assert key(task_id) in evicted.keys


def test_trim_splits_an_unordered_bucket_by_settle_time() -> None:
    """Ids of one second arriving out of order: a trim keeps the newest-settled."""
    evicted = EvictedIds(100)
    rng = random.Random(5)
    times = {f"t{i}": 9.0 + rng.random() for i in range(400)}
    for task_id, at in times.items():
        evicted.add(task_id, at)
    evicted.trim()
    newest = sorted(times, key=times.__getitem__)[-100:]
    assert set(_contents(evicted, 400)) == set(newest)
    evicted.prune(sorted(times.values())[-51])  # half of what is left
    assert set(_contents(evicted, 400)) == set(newest[-50:])
