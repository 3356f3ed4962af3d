"""The ledger's compact layouts keep what they hold: packed held effects, retry counts in
`Extra`, shared `seen` ints and dicts copied after churn (exporter/ledger/)."""

from __future__ import annotations

from typing import Any

from exporter.clock import FakeClock
from exporter.ledger import Ledger
from exporter.ledger.entry import STATE_NAMES, Entry
from exporter.ledger.pending import MAX_EFFECTS, Effect, PendingLabels
from exporter.taskdata import (
    RECEIVED,
    RETRY,
    SOURCE_EVENTS,
    SOURCE_PUBSUB,
    STARTED,
    SUCCESS,
    TaskUpdate,
)

EVERY_KIND: list[Effect] = [
    ("c", "received", 1),
    ("c", "retried", 3),
    ("x", "KeyError", 0),
    ("w", True, 0),
    ("w", False, 0),
    ("r", 0.25, 0),
    ("r", 2, 0),  # an int runtime stays an int
    ("q", 1.5, 0),
    ("c", "succeeded", 1),
]


def U(task_id: str, state: str, source: str = SOURCE_EVENTS, **kw: Any) -> TaskUpdate:
    return TaskUpdate(task_id=task_id, state=state, source=source, **kw)


def _sorted(effects: list[Effect]) -> list[Effect]:
    return sorted(effects, key=repr)


def test_held_effects_come_back_as_they_were_held() -> None:
    p = PendingLabels(5.0, 10)
    for effect in EVERY_KIND:
        assert p.hold("a", effect, 100.0)
    assert _sorted(p.effects("a")) == _sorted(EVERY_KIND)
    assert {repr(v) for _, v, _ in p.effects("a")} == {repr(v) for _, v, _ in EVERY_KIND}
    assert _sorted(p.take("a")) == _sorted(EVERY_KIND)
    assert p.take("a") == [] and len(p) == 0


def test_a_second_runtime_is_held_too() -> None:
    p = PendingLabels(5.0, 10)
    p.hold("a", ("r", 0.5, 0), 1.0)
    p.hold("a", ("c", "succeeded", 1), 1.0)
    p.hold("a", ("r", 0.75, 0), 1.0)
    assert _sorted(p.take("a")) == [("c", "succeeded", 1), ("r", 0.5, 0), ("r", 0.75, 0)]


def test_restored_effects_are_held_again_as_saved() -> None:
    p = PendingLabels(5.0, 10)
    p.restore("a", EVERY_KIND, 100.0)
    assert p.effects("a") == EVERY_KIND  # (restored runtimes stay tuples: in order)
    assert p.due(104.9) == [] and p.due(105.0) == ["a"]


def test_an_id_holding_too_many_effects_asks_for_release() -> None:
    p = PendingLabels(5.0, 10)
    answers = [p.hold("a", ("c", "retried", 2), 1.0) for _ in range(MAX_EFFECTS + 1)]
    assert all(answers[:MAX_EFFECTS]) and not answers[MAX_EFFECTS]


def test_a_stale_queue_item_of_a_re_held_id_is_not_due_early() -> None:
    p = PendingLabels(5.0, 10)
    p.hold("a", ("c", "received", 1), 100.0)
    p.take("a")  # released (e.g. evicted), then held again later with a later deadline
    p.hold("a", ("c", "received", 1), 103.0)
    assert p.due(106.0) == []
    assert p.due(108.0) == ["a"]


def test_held_ids_survive_the_copy_after_many_takes_and_keep_their_order() -> None:
    p = PendingLabels(5.0, 4)
    for i in range(40):
        p.hold(f"t{i}", ("c", "received", 1), float(i))
        if i % 2:
            p.take(f"t{i}")  # every odd one released: ten copies of `held` on the way
    assert len(p) == 20
    assert p.due(100.0) == [f"t{i}" for i in range(0, 40, 2)]
    assert p.effects("t38") == [("c", "received", 1)]


def test_retry_counts_outside_the_entry_survive_a_save_and_dedupe_after_it() -> None:
    clock = FakeClock()
    before = Ledger(clock=clock)
    before.apply(U("a", RECEIVED, name="t", queue="q", retries=0))
    before.apply(U("a", RETRY))  # unnumbered, from events
    before.apply(U("a", RETRY, SOURCE_PUBSUB))  # unnumbered, from pub/sub
    before.apply(U("a", RECEIVED, retries=1))
    before.apply(U("a", RETRY))
    assert before.totals()["retried"] == 2
    assert before.get("a").retries == 1  # type: ignore[union-attr]
    after = Ledger(clock=clock)
    after.import_state(before.export_state())
    assert after.totals()["retried"] == 2
    assert not after.apply(U("a", RETRY, SOURCE_PUBSUB, retries=1))  # the second, again
    assert after.apply(U("a", RETRY, SOURCE_PUBSUB, retries=2))  # a third
    assert after.totals()["retried"] == 3


def test_a_task_never_retried_makes_no_extra() -> None:
    led = Ledger(clock=FakeClock())
    led.apply(U("a", RECEIVED, name="t", queue="q", retries=0))
    led.apply(U("a", SUCCESS, runtime=0.1))
    led.apply(U("b", RECEIVED, name="t", queue="q", retries=0))
    a, b = led._tables.entries["a"], led._tables.entries["b"]
    assert a.retries == 0 and a.retry_total == 0
    assert a.x is b.x  # the shared empty one
    led.apply(U("b", RETRY))
    assert b.x is not a.x and b.retry_total == 1 and a.retry_total == 0


def test_equal_seen_masks_are_one_object() -> None:
    led = Ledger(clock=FakeClock())
    for tid in ("a", "b"):
        led.apply(U(tid, RECEIVED, name="t", queue="q"))
        led.apply(U(tid, STARTED))
        led.apply(U(tid, SUCCESS, runtime=0.1))
    a, b = led._tables.entries["a"].seen, led._tables.entries["b"].seen
    assert a == b and a > 256 and a is b


def test_entries_copied_after_evictions_keep_the_newest_and_their_dedup() -> None:
    led = Ledger(clock=FakeClock(), max_tasks=2048)  # copied every 1,434 evictions
    n = 10_000
    for i in range(n):
        led.apply(U(f"t{i}", SUCCESS, name="t", queue="q"))
    assert led.counts().entries == 2048
    assert led.get(f"t{n - 2049}") is None and led.get(f"t{n - 2048}") is not None
    assert not any(led.apply(U(f"t{i}", SUCCESS)) for i in range(n - 2048, n))
    assert led.totals()["succeeded"] == n


def test_state_and_sources_kept_in_seen_are_read_back_and_never_saved() -> None:
    led = Ledger(clock=FakeClock())
    led.apply(U("a", RECEIVED, name="t", queue="q", timestamp=1.0))
    led.apply(U("a", SUCCESS, SOURCE_PUBSUB, timestamp=3.0))
    led.apply(U("a", STARTED, timestamp=2.0))  # late: the state stays, the source is noted
    led.observe_running([("b", "t", "q", "w", None)])
    a = led.get("a")
    assert a is not None and a.state == SUCCESS and a.updated_at == 3.0
    assert a.sources == {SOURCE_EVENTS, SOURCE_PUBSUB}
    assert led.get("b").sources == {"inspect"}  # type: ignore[union-attr]
    assert led.get("b").state == RECEIVED  # type: ignore[union-attr]
    saved = led.export_state()["seen"]["a"]
    assert int(saved.split("\x1f")[0]) == 2 | 4 | 8  # the state bits only, as before
    again = Ledger(clock=FakeClock())
    again.import_state(led.export_state() | {"seen": {"a": saved}})
    assert again.get("a").state == SUCCESS  # type: ignore[union-attr]
    assert not again.apply(U("a", SUCCESS, SOURCE_EVENTS))


def test_a_retry_outranks_a_later_start_and_every_state_reads_back() -> None:
    led = Ledger(clock=FakeClock())
    led.apply(U("a", RETRY, name="t", queue="q"))
    led.apply(U("a", STARTED))
    assert led.get("a").state == RETRY  # type: ignore[union-attr]
    for state in STATE_NAMES:
        e = Entry(state)
        assert e.state == state and e.sources == 0 and e.seen & 0xFFFF == 0
        e.state = SUCCESS
        assert e.state == SUCCESS and e.seen & 0xFFFF == 0
    assert Entry("NOT_A_STATE").state == "PENDING"
