"""The ledger's compact layouts keep what they hold: held effects as codes, retry counts in
`Extra`, shared `seen` ints and dicts copied after churn (exporter/ledger/)."""

from __future__ import annotations

from typing import Any

from exporter.clock import FakeClock
from exporter.ledger import Ledger
from exporter.ledger.entry import STATE_NAMES, Entry
from exporter.ledger.pending import (
    COUNTER_CODE,
    EXCEPTION,
    HELD,
    MAX_EFFECTS,
    RUNTIME,
    WIN_OK,
    Effect,
    PendingLabels,
    retried_code,
)
from exporter.taskdata import (
    FAILURE,
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


def _held(exc: str | None = "KeyError", runtime: float | None = 0.25) -> Entry:
    e = Entry(RECEIVED)
    e.extra().exc_type = exc
    e.runtime = runtime
    e.seen |= HELD  # (what attribution sets once the first effect is held)
    return e


def test_held_codes_come_back_as_the_effects_they_stand_for() -> None:
    p = PendingLabels(5.0, 10)
    e = _held()
    for code in (COUNTER_CODE["received"], RUNTIME, EXCEPTION, WIN_OK, COUNTER_CODE["succeeded"]):
        assert p.hold("a", e, code, 100.0)
    assert p.held["a"].__class__ is int  # one int for all five
    want = [("c", "received", 1), ("c", "succeeded", 1), ("r", 0.25, 0), ("x", "KeyError", 0)]
    assert _sorted(p.effects("a", e)) == _sorted([*want, ("w", True, 0)])
    assert _sorted(p.take("a", e)) == _sorted([*want, ("w", True, 0)])
    assert p.take("a", e) == [] and len(p) == 0


def test_equal_codes_are_one_object() -> None:
    p = PendingLabels(5.0, 10)
    for tid in ("a", "b"):
        for code in (COUNTER_CODE["received"], COUNTER_CODE["started"], RUNTIME, WIN_OK):
            p.hold(tid, _held(), code, 1.0)
    assert p.held["a"] == p.held["b"] > 256 and p.held["a"] is p.held["b"]


def test_explicit_effects_come_back_as_they_were_held() -> None:
    p = PendingLabels(5.0, 10)
    e = _held(exc=None, runtime=None)
    for effect in EVERY_KIND:
        assert p.hold("a", e, 0, 100.0, effect)
    assert _sorted(p.effects("a", e)) == _sorted(EVERY_KIND)
    assert {repr(v) for _, v, _ in p.effects("a", e)} == {repr(v) for _, v, _ in EVERY_KIND}
    assert _sorted(p.take("a", e)) == _sorted(EVERY_KIND)


def test_retried_increments_keep_their_sum_and_their_number() -> None:
    p = PendingLabels(5.0, 10)
    e = _held()
    for n in (1, 3, 2):
        p.hold("a", e, retried_code(n), 1.0)
    p.hold("a", e, COUNTER_CODE["retried"], 1.0)  # (one of 1)
    got = p.take("a", e)
    assert len(got) == 4 and all(k == "c" and c == "retried" for k, c, _ in got)
    assert sum(n for *_, n in got) == 7 and min(n for *_, n in got) >= 1


def test_a_second_one_of_a_kind_is_held_explicitly_with_its_value_then() -> None:
    p = PendingLabels(5.0, 10)
    e = _held(runtime=0.5)
    p.hold("a", e, RUNTIME, 1.0)
    p.hold("a", e, COUNTER_CODE["succeeded"], 1.0)
    p.pin("a", e)  # an update may change the runtime: the held one is copied out
    e.runtime = 0.75
    p.hold("a", e, RUNTIME, 1.0)  # (the ledger observes one per task; the store takes two)
    e.runtime = 0.9
    assert _sorted(p.take("a", e)) == [("c", "succeeded", 1), ("r", 0.5, 0), ("r", 0.9, 0)]
    p.hold("b", e, RUNTIME, 1.0)
    p.hold("b", e, RUNTIME, 1.0)  # a duplicate bit: its value now, explicitly
    e.runtime = 1.0
    assert _sorted(p.take("b", e)) == [("r", 0.9, 0), ("r", 1.0, 0)]


def test_pinned_values_survive_a_change_of_the_entry() -> None:
    p = PendingLabels(5.0, 10)
    e = _held(exc="KeyError", runtime=0.5)
    p.hold("a", e, EXCEPTION, 1.0)
    p.hold("a", e, RUNTIME, 1.0, ("q", 2.0, 0))
    p.pin("a", e)
    e.extra().exc_type, e.runtime = "ValueError", 0.7
    assert _sorted(p.take("a", e)) == [("q", 2.0, 0), ("r", 0.5, 0), ("x", "KeyError", 0)]
    p.pin("nothing", e)  # an id holding nothing: nothing to do


def test_restored_effects_are_held_again_as_saved() -> None:
    p = PendingLabels(5.0, 10)
    e = _held(exc=None, runtime=None)
    p.restore("a", e, EVERY_KIND, 100.0)
    assert p.effects("a", e) == EVERY_KIND  # (explicit: in order)
    assert p.due(104.9) == [] and p.due(105.0) == ["a"]


def test_an_id_holding_too_many_effects_asks_for_release() -> None:
    p = PendingLabels(5.0, 10)
    e = _held()
    answers = [p.hold("a", e, retried_code(2), 1.0) for _ in range(MAX_EFFECTS + 1)]
    assert all(answers[:MAX_EFFECTS]) and not answers[MAX_EFFECTS]
    answers = [p.hold("b", e, 0, 1.0, ("q", 1.0, 0)) for _ in range(MAX_EFFECTS + 1)]
    assert all(answers[:MAX_EFFECTS]) and not answers[MAX_EFFECTS]
    codes = [*(COUNTER_CODE[c] for c in ("sent", "received", "started")), RUNTIME, WIN_OK]
    for code in codes:
        assert p.hold("c", e, code, 1.0)
    answers = [p.hold("c", e, retried_code(1), 1.0) for _ in range(MAX_EFFECTS - 4)]
    assert all(answers[:-1]) and not answers[-1]


def test_a_stale_queue_item_of_a_re_held_id_is_not_due_early() -> None:
    p = PendingLabels(5.0, 10)
    old = _held()
    p.hold("a", old, COUNTER_CODE["received"], 100.0)
    p.take("a", old)  # released (e.g. evicted), then held again by a new entry later
    old.seen &= ~HELD
    new = _held()
    p.hold("a", new, COUNTER_CODE["received"], 103.0)
    assert p.due(106.0) == []
    assert p.due(108.0) == ["a"]


def test_held_ids_survive_the_copy_after_many_takes_and_keep_their_order() -> None:
    p = PendingLabels(5.0, 4)
    entries = {}
    for i in range(40):
        e = entries[f"t{i}"] = _held()
        p.hold(f"t{i}", e, COUNTER_CODE["received"], float(i))
        if i % 2:
            p.take(f"t{i}", e)  # every odd one released: ten copies of `held` on the way
            e.seen &= ~HELD
    assert len(p) == 20 and len(p.ids) <= 21  # stale queue items compacted
    assert p.due(100.0) == [f"t{i}" for i in range(0, 40, 2)]
    assert p.effects("t38", entries["t38"]) == [("c", "received", 1)]


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


def test_equal_exception_types_are_one_object() -> None:
    led = Ledger(clock=FakeClock())
    for tid in ("a", "b"):
        led.apply(U(tid, FAILURE, SOURCE_PUBSUB, name="t", queue="q",
                    exception_type="".join(["Value", "Error"])))  # fmt: skip
    a, b = led._tables.entries["a"], led._tables.entries["b"]
    assert a.exc_type == "ValueError" and a.exc_type is b.exc_type
