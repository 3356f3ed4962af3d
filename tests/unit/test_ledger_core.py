"""Ledger de-duplication, retries, attribution, bounds, windows and histograms (FakeClock)."""

from __future__ import annotations

from exporter.clock import FakeClock
from exporter.ledger import RECONCILE_MARGIN, Ledger
from exporter.taskdata import (
    FAILURE,
    RECEIVED,
    RETRY,
    SENT,
    SOURCE_EVENTS,
    SOURCE_PUBSUB,
    SOURCE_RECONCILE,
    STARTED,
    SUCCESS,
    TaskUpdate,
)


def U(task_id: str, state: str, source: str = SOURCE_EVENTS, **kw: object) -> TaskUpdate:
    return TaskUpdate(task_id=task_id, state=state, source=source, **kw)  # type: ignore[arg-type]


def total(ledger: Ledger, counter: str, name: str | None = None) -> int:
    return sum(
        v
        for (n, _q, c), v in ledger.counts().tasks.items()
        if c == counter and (name is None or n == name)
    )


def test_success_from_three_sources_counts_once() -> None:
    ledger = Ledger(clock=FakeClock())
    assert ledger.apply(U("a", SUCCESS, SOURCE_EVENTS, name="t", runtime=0.5))
    assert not ledger.apply(U("a", SUCCESS, SOURCE_PUBSUB, name="t"))
    assert not ledger.apply(U("a", SUCCESS, SOURCE_RECONCILE, name="t", timestamp=1.7e9))
    assert total(ledger, "succeeded") == 1
    assert ledger.get("a").sources == {SOURCE_EVENTS, SOURCE_PUBSUB, SOURCE_RECONCILE}


def test_each_retry_number_counts_once() -> None:
    ledger = Ledger(clock=FakeClock())
    ledger.apply(U("a", RETRY, SOURCE_PUBSUB, name="t", retries=0))
    ledger.apply(U("a", RETRY, SOURCE_PUBSUB, name="t", retries=1))
    ledger.apply(U("a", RETRY, SOURCE_RECONCILE, name="t", retries=1))
    assert total(ledger, "retried") == 2


def test_unnumbered_retry_dedupes_with_events_numbering() -> None:
    ledger = Ledger(clock=FakeClock())
    for attempt in range(3):
        ledger.apply(U("a", RECEIVED, name="t", retries=attempt))
        if attempt < 2:
            ledger.apply(U("a", RETRY))  # task-retried carries no number
            ledger.apply(U("a", RETRY, SOURCE_PUBSUB))  # no result_extended: no number
    ledger.apply(U("a", SUCCESS, SOURCE_PUBSUB))
    assert total(ledger, "retried") == 2
    assert total(ledger, "received") == 1  # RECEIVED is one state, counted once per task


def test_unnumbered_retries_from_pubsub_alone_each_count() -> None:
    ledger = Ledger(clock=FakeClock())
    for _ in range(3):
        ledger.apply(U("a", RETRY, SOURCE_PUBSUB))
    assert total(ledger, "retried") == 3


def test_final_result_implies_retries_missed() -> None:
    ledger = Ledger(clock=FakeClock())
    ledger.apply(U("a", RETRY, SOURCE_PUBSUB, name="t", retries=0))
    ledger.apply(U("a", SUCCESS, SOURCE_RECONCILE, name="t", retries=3, timestamp=1.7e9))
    assert total(ledger, "retried") == 3
    assert total(ledger, "succeeded") == 1


def test_out_of_order_events_keep_final_state() -> None:
    ledger = Ledger(clock=FakeClock())
    ledger.apply(U("a", SUCCESS, runtime=1.0))
    ledger.apply(U("a", STARTED))
    ledger.apply(U("a", RECEIVED, name="t"))
    rec = ledger.get("a")
    assert rec is not None and rec.state == SUCCESS and rec.name == "t"
    assert [total(ledger, c) for c in ("received", "started", "succeeded")] == [1, 1, 1]
    assert ledger.running_tasks() == []


def test_name_from_events_attributes_nameless_result() -> None:
    ledger = Ledger(clock=FakeClock())
    ledger.apply(U("a", RECEIVED, name="tests.add"))
    ledger.apply(U("a", SUCCESS, SOURCE_PUBSUB))
    ledger.apply(U("b", SUCCESS, SOURCE_PUBSUB))
    assert total(ledger, "succeeded", "tests.add") == 1
    assert total(ledger, "succeeded", "unknown") == 1


def test_inspect_names_attribute_without_counting() -> None:
    ledger = Ledger(clock=FakeClock())
    ledger.apply(U("a", STARTED, SOURCE_PUBSUB))
    ledger.observe_running([("a", "tests.sleep", "q1", "w@h", 1.0)])
    ledger.apply(U("a", SUCCESS, SOURCE_PUBSUB))
    assert total(ledger, "succeeded", "tests.sleep") == 1
    assert total(ledger, "started") == 1


def test_name_and_exception_cardinality_is_bounded() -> None:
    ledger = Ledger(clock=FakeClock(), max_task_names=3, max_exception_types=2)
    for i in range(10):
        ledger.apply(U(f"id{i}", FAILURE, name=f"name{i}", exception_type=f"E{i}"))
    counts = ledger.counts()
    names = {n for n, _q, _c in counts.tasks}
    assert names == {"name0", "name1", "name2", "other"}
    assert {e for _n, e in counts.exceptions} == {"E0", "E1", "other"}
    assert counts.overflow["name"] == 7 * 2  # counter + exception row per folded failure
    assert sum(counts.exceptions.values()) == 10


def test_eviction_bounds_memory_and_never_recounts() -> None:
    clock = FakeClock()
    ledger = Ledger(clock=clock, max_tasks=20)
    ledger.expect_backfill()  # a reconcile source exists
    for i in range(35):
        clock.advance(1)
        ledger.apply(U(f"id{i}", SUCCESS, SOURCE_PUBSUB, name="t", timestamp=clock.time()))
    counts = ledger.counts()
    assert counts.entries == 20 and counts.evictions == 15
    # A reconcile finding an evicted task's result is a duplicate, not a new success ...
    assert not ledger.apply(U("id12", SUCCESS, SOURCE_RECONCILE, name="t", timestamp=1.7e9 + 13))
    # ... and results the reconcile has not seen yet still count, whatever their date.
    assert ledger.apply(U("new", SUCCESS, SOURCE_RECONCILE, name="t", timestamp=1.7e9 + 2))
    assert total(ledger, "succeeded") == 36
    # Once a completed reconcile covers them, evicted ids need not be remembered.
    clock.advance(RECONCILE_MARGIN + 60)
    ledger.reconcile_completed(clock.time())
    assert len(ledger._tables.evicted) == 0
    assert not ledger.apply(U("id12", SUCCESS, SOURCE_RECONCILE, name="t", timestamp=1.7e9 + 13))


def test_evicted_ids_past_their_bound_are_reported_as_dropped() -> None:
    """The evicted-id memory is bounded too (half the ledger): ids it gives up before a
    reconcile completes are counted in a metric, because a reconcile would count them again."""
    clock = FakeClock()
    ledger = Ledger(clock=clock, max_tasks=40)  # remembers at most 20 (+ slack) evicted ids
    ledger.expect_backfill()
    for i in range(200):
        ledger.apply(U(f"id{i}", SUCCESS, SOURCE_RECONCILE, name="t", timestamp=1.7e9 + i))
    counts = ledger.counts()
    assert counts.evictions == 160
    assert counts.evicted_ids == len(ledger._tables.evicted) <= 20 + ledger._tables.evicted.slack
    assert counts.evicted_ids_dropped == 160 - counts.evicted_ids
    # The newest-settled evicted ids are still known; the oldest given up would count again,
    # which is exactly what the dropped counter warns of.
    assert not ledger.apply(U("id159", SUCCESS, SOURCE_RECONCILE, name="t", timestamp=1.7e9 + 159))
    assert ledger.apply(U("id0", SUCCESS, SOURCE_RECONCILE, name="t", timestamp=1.7e9))
    # A completed reconcile covers them: nothing is remembered, nothing more is dropped.
    clock.advance(RECONCILE_MARGIN + 1000)
    ledger.reconcile_completed(clock.time())
    assert ledger.counts().evicted_ids == 0


def test_big_first_reconcile_with_small_ledger_counts_everything() -> None:
    """More results in the backend than the ledger holds, all dated alike: each counts once."""
    clock = FakeClock()
    ledger = Ledger(clock=clock, max_tasks=100)
    ledger.expect_backfill()
    when = clock.time() - 3600
    batch = [U(f"k{i}", SUCCESS, SOURCE_RECONCILE, name="t", timestamp=when) for i in range(1000)]
    assert ledger.apply_many(batch) == 1000
    ledger.reconcile_completed(clock.time())
    assert ledger.apply_many(batch) == 0
    assert total(ledger, "succeeded") == 1000


def test_reconcile_watermark_skips_old_results_only() -> None:
    clock = FakeClock(2_000_000_000.0)
    ledger = Ledger(clock=clock)
    ledger.reconcile_completed(clock.time())
    old = clock.time() - RECONCILE_MARGIN - 1
    assert not ledger.apply(U("old", SUCCESS, SOURCE_RECONCILE, timestamp=old))
    assert ledger.apply(U("new", SUCCESS, SOURCE_RECONCILE, timestamp=clock.time() - 5))
    # Live sources settle at receive time, so a late pub/sub message still counts.
    assert ledger.apply(U("live", SUCCESS, SOURCE_PUBSUB, timestamp=old))
    assert ledger.below_watermark() == 1


def test_runtime_and_queue_wait_histograms() -> None:
    ledger = Ledger(clock=FakeClock(), buckets=(1.0, 10.0), wait_buckets=(1.0, 10.0))
    ledger.apply(U("a", SENT, name="t", queue="q", timestamp=100.0))
    ledger.apply(U("a", STARTED, timestamp=105.0))
    ledger.apply(U("a", SUCCESS, SOURCE_PUBSUB))  # no runtime yet
    ledger.apply(U("a", SUCCESS, runtime=0.5))  # the event brings it: observed once
    ledger.apply(U("a", SUCCESS, runtime=0.5))
    # Producer clock ahead of the worker's: the negative wait is clamped, not dropped.
    ledger.apply(U("b", SENT, name="t", queue="q", timestamp=200.0))
    ledger.apply(U("b", STARTED, timestamp=199.0))
    ledger.apply(U("b", SUCCESS))  # success without runtime: no crash, no observation
    counts = ledger.counts()
    runtime = counts.runtime[("t", "q")]
    assert runtime.cumulative == (1, 1, 1) and runtime.sum == 0.5
    wait = counts.queue_wait[("t", "q")]
    assert wait.cumulative == (1, 2, 2) and wait.sum == 5.0


def test_runtime_derived_from_pubsub_without_events() -> None:
    clock = FakeClock()
    ledger = Ledger(clock=clock, buckets=(1.0, 10.0), derive_runtime=True)
    ledger.apply(U("a", STARTED, SOURCE_PUBSUB, name="t"))
    clock.advance(3)
    ledger.apply(U("a", SUCCESS, SOURCE_PUBSUB, name="t"))
    assert ledger.counts().runtime[("t", "unknown")].sum == 3.0


def test_success_ratio_window_moves_with_the_clock() -> None:
    clock = FakeClock()
    ledger = Ledger(clock=clock, success_window=60)
    for i in range(3):
        ledger.apply(U(f"ok{i}", SUCCESS, name="t"))
    ledger.apply(U("bad", FAILURE, name="t"))
    assert ledger.success_ratio()["t"] == (3, 1)
    assert ledger.success_ratio()[""] == (3, 1)
    clock.advance(61)
    ledger.apply(U("bad2", FAILURE, name="u"))
    assert ledger.success_ratio() == {"u": (0, 1), "": (0, 1)}


def test_old_backfilled_results_count_but_stay_out_of_the_window() -> None:
    clock = FakeClock()
    ledger = Ledger(clock=clock, success_window=300)
    now = clock.time()
    # A first reconcile finds yesterday's failures and a result from a minute ago.
    for i in range(50):
        ledger.apply(U(f"old{i}", FAILURE, SOURCE_RECONCILE, name="t", timestamp=now - 86_400))
    ledger.apply(U("fresh", SUCCESS, SOURCE_RECONCILE, name="t", timestamp=now - 60))
    assert total(ledger, "failed") == 50 and total(ledger, "succeeded") == 1
    assert ledger.success_ratio()["t"] == (1, 0)


def test_running_until_finished() -> None:
    ledger = Ledger(clock=FakeClock())
    ledger.apply(U("a", STARTED, name="t", timestamp=5.0))
    assert [(i, n, at) for i, n, _, _, at in ledger.running_tasks()] == [("a", "t", 5.0)]
    ledger.apply(U("a", FAILURE, exception_type="ValueError"))
    assert ledger.running_tasks() == []
    assert [r.task_id for r in ledger.recent(failed_only=True)] == ["a"]


def test_hundred_thousand_names_stay_bounded() -> None:
    import tracemalloc

    ledger = Ledger(clock=FakeClock(), max_tasks=1000, max_task_names=500)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(100_000):
        ledger.apply(U(f"id{i}", SUCCESS, SOURCE_PUBSUB, name=f"task.{i}", queue="q"))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    counts = ledger.counts()
    assert counts.entries == 1000
    assert len(counts.tasks) == 501  # 500 names + "other"
    assert counts.overflow["name"] >= 99_500
    assert sum(counts.tasks.values()) == 100_000
    assert grown < 20_000_000, grown


def test_totals_are_the_counts_summed_over_names_and_queues() -> None:
    clock = FakeClock()
    ledger = Ledger(clock=clock, label_grace=5.0)
    for i in range(30):
        name, queue = f"t{i % 4}", f"q{i % 3}"
        ledger.apply(U(f"s{i}", RECEIVED, name=name, queue=queue))
        ledger.apply(U(f"s{i}", (SUCCESS, FAILURE, RETRY)[i % 3], name=name, queue=queue))
    ledger.apply(U("late", SUCCESS, SOURCE_PUBSUB))  # no name yet: waits out its grace
    clock.advance(10)
    totals = ledger.totals()  # first: it, too, counts what waited past its grace
    want: dict[str, int] = {}
    for (_n, _q, c), v in ledger.counts().tasks.items():
        want[c] = want.get(c, 0) + v
    assert totals == want
    assert want["succeeded"] == 11 and want["failed"] == 10 and want["retried"] == 10
