"""Attribution with a grace: counts go under the name and queue any source learns in time.

Sources race (a result without result_extended has no name and often beats task-received;
task-received has no queue), so the ledger holds label-dependent effects for up to
`label_grace` seconds. These tests drive it with a FakeClock: order, duplicates, the bound,
eviction and a save/load in the middle of a grace.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.clock import FakeClock
from exporter.ledger import Ledger
from exporter.ledger.attribution import NAMED_WITHIN
from exporter.taskdata import (
    FAILURE,
    RECEIVED,
    RETRY,
    SENT,
    SOURCE_EVENTS,
    SOURCE_INSPECT,
    SOURCE_PUBSUB,
    SOURCE_RECONCILE,
    STARTED,
    SUCCESS,
    TaskUpdate,
)

GRACE = 5.0


def U(task_id: str, state: str, source: str = SOURCE_EVENTS, **kw: Any) -> TaskUpdate:
    return TaskUpdate(task_id=task_id, state=state, source=source, **kw)


def ledger(clock: FakeClock, **kw: Any) -> Ledger:
    return Ledger(clock=clock, label_grace=GRACE, buckets=(1.0,), wait_buckets=(1.0,), **kw)


def labelled(led: Ledger) -> dict[str, Any]:
    """Everything that carries a name or queue label, in comparable form."""
    c = led.counts()
    return {
        "tasks": {k: v for k, v in c.tasks.items() if v},
        "exceptions": dict(c.exceptions),
        "runtime": {k: h.count for k, h in c.runtime.items()},
        "wait": {k: h.count for k, h in c.queue_wait.items()},
        "window": led.success_ratio(),
    }


def test_a_result_before_the_name_counts_under_the_name() -> None:
    clock = FakeClock()
    led = ledger(clock)
    led.apply(U("a", SUCCESS, SOURCE_PUBSUB))  # no result_extended: no name
    assert led.counts().tasks == {}  # held, not under unknown
    assert led.counts().label_pending == 1
    clock.advance(0.05)  # the events linger
    led.apply(U("a", RECEIVED, name="t.add", queue="celery"))
    counts = led.counts()
    assert counts.tasks == {("t.add", "celery", "succeeded"): 1, ("t.add", "celery", "received"): 1}
    assert counts.label_pending == 0 and counts.unattributed == 0
    assert led.success_ratio() == {"t.add": (1, 0), "": (1, 0)}


def test_a_name_that_never_comes_is_unknown_after_the_grace_and_counted() -> None:
    clock = FakeClock()
    led = ledger(clock)
    led.apply(U("a", FAILURE, SOURCE_PUBSUB, exception_type="KeyError"))
    clock.advance(GRACE - 0.1)
    assert led.counts().tasks == {}
    clock.advance(0.2)
    counts = led.counts()
    assert counts.tasks == {("unknown", "unknown", "failed"): 1}
    assert counts.exceptions == {("unknown", "KeyError"): 1}
    assert counts.unattributed == 1 and counts.label_pending == 0
    # A name learned after the grace names later effects; the earlier stay where they went.
    led.apply(U("a", FAILURE, SOURCE_EVENTS, name="t.add"))
    assert led.counts().tasks == {("unknown", "unknown", "failed"): 1}
    assert led.get("a").name == "t.add"  # the API shows the name learned late


def test_a_queue_never_named_is_the_default_queue() -> None:
    clock = FakeClock()
    led = ledger(clock, default_queue="celery")
    led.apply(U("a", RECEIVED, name="t.add"))  # task-received has no queue
    led.apply(U("a", STARTED))
    led.apply(U("a", SUCCESS, runtime=0.5))
    clock.advance(GRACE)
    counts = led.counts()
    assert {k: v for k, v in counts.tasks.items()} == {
        ("t.add", "celery", "received"): 1,
        ("t.add", "celery", "started"): 1,
        ("t.add", "celery", "succeeded"): 1,
    }
    assert counts.runtime[("t.add", "celery")].count == 1
    assert counts.unattributed == 0  # the name was known
    # Released once: a later effect of the same task is not held again.
    led.apply(U("a", RETRY, SOURCE_PUBSUB, retries=0))
    assert led.counts().tasks[("t.add", "celery", "retried")] == 1


def test_inspect_names_and_queues_release_what_waits() -> None:
    clock = FakeClock()
    led = ledger(clock)
    led.apply(U("a", STARTED, SOURCE_PUBSUB))  # task_track_started, no name
    led.apply(U("b", SUCCESS, SOURCE_PUBSUB))  # finished before the poll saw it running
    led.observe_running([("a", "t.slow", "long", "w1", 1.0), ("b", "t.fast", "short", "w1", 1.0)])
    assert led.counts().tasks == {
        ("t.slow", "long", "started"): 1,
        ("t.fast", "short", "succeeded"): 1,
    }
    assert led.counts().label_pending == 0


def test_the_pending_bound_releases_the_oldest_early_and_counts_it() -> None:
    clock = FakeClock()
    led = ledger(clock, max_tasks=8)  # at most 2 tasks wait at once
    for i in range(3):
        led.apply(U(f"t{i}", SUCCESS, SOURCE_PUBSUB))
        clock.advance(0.1)
    counts = led.counts()
    assert counts.label_pending == 2 and counts.label_overflow == 1
    assert counts.tasks == {("unknown", "unknown", "succeeded"): 1}  # t0, early
    led.apply(U("t0", RECEIVED, name="t.add", queue="q"))  # too late for t0's success
    led.apply(U("t1", RECEIVED, name="t.add", queue="q"))
    assert led.counts().tasks[("t.add", "q", "succeeded")] == 1


def test_eviction_releases_a_waiting_entry_first() -> None:
    clock = FakeClock()
    led = ledger(clock, max_tasks=2)
    led.apply(U("a", SUCCESS, SOURCE_PUBSUB))
    led.apply(U("b", SUCCESS, SOURCE_PUBSUB, name="t", queue="q"))
    led.apply(U("c", SUCCESS, SOURCE_PUBSUB, name="t", queue="q"))  # evicts "a"
    counts = led.counts()
    assert counts.tasks == {("unknown", "unknown", "succeeded"): 1, ("t", "q", "succeeded"): 2}
    assert counts.label_overflow == 1 and counts.unattributed == 1 and counts.label_pending == 0


def test_grace_zero_labels_at_once_as_before() -> None:
    led = Ledger(clock=FakeClock())
    led.apply(U("a", SUCCESS, SOURCE_PUBSUB))
    assert led.counts().tasks == {("unknown", "unknown", "succeeded"): 1}


def test_a_save_in_the_middle_of_a_grace_counts_once_after_a_restart() -> None:
    clock = FakeClock()
    before = ledger(clock)
    before.apply(U("done", SUCCESS, SOURCE_PUBSUB, name="t", queue="q"))
    before.apply(U("a", FAILURE, SOURCE_PUBSUB, exception_type="KeyError"))
    before.apply(U("b", RECEIVED, name="t.b"))
    before.apply(U("b", SUCCESS, runtime=0.5))
    state = before.export_state()
    assert state["counters"]["tasks"] == [["t", "q", "succeeded", 1]]  # held effects wait

    after = ledger(clock)  # a restart: the saved state is loaded, then sources resume
    after.import_state(state)
    assert after.counts().label_pending == 2
    assert not after.apply(U("a", FAILURE, SOURCE_EVENTS, name="t.a", queue="q"))  # duplicate
    clock.advance(GRACE)
    counts = after.counts()
    assert counts.tasks == {
        ("t", "q", "succeeded"): 1,
        ("t.a", "q", "failed"): 1,
        ("t.b", "unknown", "received"): 1,
        ("t.b", "unknown", "succeeded"): 1,
    }
    assert counts.exceptions == {("t.a", "KeyError"): 1}
    assert counts.runtime[("t.b", "unknown")].count == 1
    # A release marks the entry for the next save: saved again, nothing is held twice.
    again = after.export_state()
    restarted = ledger(clock)
    restarted.import_state(again)
    clock.advance(GRACE)
    assert restarted.counts().tasks == counts.tasks
    assert restarted.counts().label_pending == 0


def test_saved_effects_that_are_junk_are_dropped() -> None:
    clock = FakeClock()
    led = ledger(clock)
    junk = "\x1f".join(["8", "0.0.0", "", "", "", '[["c","succeeded",1],["c","evil",9],7,"x"]'])
    led.import_state({"counters": {"v": 1}, "seen": {"a": junk, "b": junk[:-3] + "{"}})
    clock.advance(GRACE)
    assert led.counts().tasks == {("unknown", "unknown", "succeeded"): 1}


# -- property: any interleaving gives the same labelled counts ---------------------------

NAMES = ["t.add", "t.mul"]
QUEUES = ["celery", "bulk"]


@st.composite
def task_streams(draw: st.DrawFn) -> list[TaskUpdate]:
    """Updates of a few tasks from every source, each task named by at least one of them."""
    updates: list[TaskUpdate] = []
    for i in range(draw(st.integers(1, 5))):
        tid = f"t{i}"
        name, queue = draw(st.sampled_from(NAMES)), draw(st.sampled_from(QUEUES))
        ok = draw(st.booleans())
        final = SUCCESS if ok else FAILURE
        retries = draw(st.integers(0, 2))
        sent = draw(st.booleans())  # task_send_sent_event
        extended = draw(st.booleans())  # result_extended
        named = {"name": name, "queue": queue} if extended else {}
        exc = {} if ok else {"exception_type": "KeyError"}
        mine = [
            U(tid, RECEIVED, name=name, retries=retries, timestamp=2.0),
            U(tid, STARTED, timestamp=3.0),
            U(tid, final, runtime=0.5, timestamp=4.0, **exc),
            U(tid, final, SOURCE_PUBSUB, timestamp=4.0, retries=retries, **named, **exc),
        ]
        mine += [U(tid, RETRY) for _ in range(retries)]
        mine += [U(tid, RETRY, SOURCE_PUBSUB, retries=r, **named) for r in range(retries)]
        if sent:
            mine.append(U(tid, SENT, name=name, queue=queue, timestamp=1.0))
        if draw(st.booleans()):  # a poll saw it running or reserved: inspect's delivery_info
            mine.append(U(tid, STARTED, SOURCE_INSPECT, name=name, queue=queue))
        # Lossy events: drop some, but keep one source of the name (task-received or the
        # extended result) and one of the final state.
        keep = draw(st.lists(st.booleans(), min_size=len(mine), max_size=len(mine)))
        mine = [u for u, k in zip(mine, keep, strict=True) if k or u.state in (final, RECEIVED)]
        dupes = draw(st.lists(st.sampled_from(mine), max_size=3))
        updates += mine + dupes
    return updates


def run(updates: list[TaskUpdate], steps: list[float], batches: list[bool]) -> dict[str, Any]:
    clock = FakeClock(1_000.0)
    led = ledger(clock)
    i = 0
    while i < len(updates):
        n = 3 if batches[i % len(batches)] else 1
        for u in updates[i : i + n]:
            if u.source == SOURCE_INSPECT:  # not an update: names learned without counting
                led.observe_running([(u.task_id, u.name or "", u.queue, "w@h", None)])
            else:
                led.apply_many([u])
        clock.advance(steps[i % len(steps)])
        i += n
    clock.advance(GRACE + 1)
    return labelled(led)


@settings(max_examples=150, deadline=None)
@given(
    task_streams(),
    st.randoms(use_true_random=False),
    st.lists(st.floats(0.0, 0.05), min_size=1, max_size=8),
    st.lists(st.booleans(), min_size=1, max_size=8),
)
def test_any_interleaving_gives_the_same_labelled_counts(
    updates: list[TaskUpdate], rnd: Any, steps: list[float], batches: list[bool]
) -> None:
    canonical = run(updates, [0.0], [False])
    shuffled = list(updates)
    rnd.shuffle(shuffled)
    assert run(shuffled, steps, batches) == canonical
    # And those counts are the truth: every task under its real name, none under unknown.
    names = Counter(n for (n, _q, c) in canonical["tasks"] if c in ("succeeded", "failed"))
    assert "unknown" not in names
    finals = {u.task_id for u in updates}
    assert sum(
        v for (_n, _q, c), v in canonical["tasks"].items() if c in ("succeeded", "failed")
    ) == len(finals)


def test_reserved_tasks_from_the_poll_name_waiting_counts() -> None:
    """The poller keeps inspect reserved()'s requests; their delivery_info names the queue."""
    from exporter.config import Config
    from exporter.poller import Poller
    from exporter.sources.inspected import InspectedTasks
    from exporter.state import State
    from tests.support.cluster import FakeReader

    clock = FakeClock()
    state = State(Config(label_grace=GRACE), clock=clock)
    state.ledger.apply(U("a", RECEIVED, name="t.add"))  # task-received: no queue
    reader = FakeReader()
    reader.add_worker("w@h", queues=("bulk",))
    reader.replies["reserved"]["w@h"] = [
        {"id": "a", "name": "t.add", "delivery_info": {"routing_key": "bulk"}},
        {"id": "b", "delivery_info": {"routing_key": 7}},  # junk is no queue, no name
    ]
    Poller(state, reader).poll()
    InspectedTasks(state).run()
    assert state.ledger.counts().tasks == {("t.add", "bulk", "received"): 1}


def test_records_show_the_late_name_and_the_label_the_counters_use() -> None:
    """The API, the sitrep and the planner read records: same names as the metrics."""
    clock = FakeClock()
    led = ledger(clock, max_task_names=1)
    led.apply(U("a", SUCCESS, SOURCE_PUBSUB))
    assert led.get("a").name is None and led.get("a").name_label == "unknown"
    led.apply(U("a", RECEIVED, name="t.first", queue="q"))  # the name, late
    led.apply(U("b", FAILURE, SOURCE_PUBSUB, name="t.second", queue="q"))
    recent = {r.task_id: r for r in led.recent()}
    assert (recent["a"].name, recent["a"].name_label) == ("t.first", "t.first")
    assert (recent["b"].name, recent["b"].name_label) == ("t.second", "other")
    assert {n for n, _q, _c in led.counts().tasks} == {"t.first", "other"}


def test_inspect_before_any_source_keeps_the_names_without_counting() -> None:
    clock = FakeClock()
    led = ledger(clock, max_tasks=3)
    led.observe_running([("a", "t.slow", "long", "w1", 1.0)])
    assert led.counts().tasks == {} and led.get("a").state == STARTED
    led.apply(U("a", SUCCESS, SOURCE_PUBSUB))  # no name in the result: inspect's is used
    assert led.counts().tasks == {("t.slow", "long", "succeeded"): 1}
    # Once the ledger evicted, an entry only inspect made is as unknown as a missing one:
    # a reconcile's unfinished state may be one counted before the eviction.
    for i in range(4):
        led.apply(U(f"x{i}", SUCCESS, SOURCE_PUBSUB, name="t", queue="q"))
    led.observe_running([("b", "t.slow", "long", "w1", 1.0)])
    assert not led.apply(U("b", STARTED, "reconcile", timestamp=clock.time()))
    assert led.apply(U("b", STARTED, SOURCE_EVENTS))  # a live source is news


def test_a_result_settled_long_before_a_reconcile_found_it_is_labelled_at_once() -> None:
    """Nothing names a task minutes after it settled: a backfill of old results neither
    waits out the grace nor overflows the bound; a recent one still waits for its name."""
    clock = FakeClock(1_000_000.0)
    led = ledger(clock, max_tasks=40)  # a bound of 10 waiting ids
    led.expect_backfill()
    old = clock.time() - GRACE - NAMED_WITHIN - 1
    for i in range(30):
        state = FAILURE if i % 3 == 0 else SUCCESS
        led.apply(U(f"old{i}", state, SOURCE_RECONCILE, timestamp=old + i * 1e-3))
    c = led.counts()
    assert c.label_pending == 0 and c.label_overflow == 0 and c.unattributed == 30
    assert labelled(led)["tasks"] == {
        ("unknown", "unknown", "failed"): 10,
        ("unknown", "unknown", "succeeded"): 20,
    }
    # A later state counts at once too (under the name it brings); the task is unattributed
    # once, and its outcome is not counted again.
    led.apply(U("old1", RECEIVED, name="app.t"))
    tasks = labelled(led)["tasks"]
    assert tasks[("app.t", "unknown", "received")] == 1 and len(tasks) == 3
    assert led.counts().unattributed == 30 and led.counts().label_pending == 0
    # A result settled within the margin may still be named by an event on its way.
    recent = clock.time() - GRACE - NAMED_WITHIN + 1
    led.apply(U("new", SUCCESS, SOURCE_RECONCILE, timestamp=recent))
    assert led.counts().label_pending == 1
    led.apply(U("new", RECEIVED, name="app.t"))
    led.apply(U("new", SENT, name="app.t", queue="q"))
    assert labelled(led)["tasks"][("app.t", "q", "succeeded")] == 1
    assert led.counts().unattributed == 30
