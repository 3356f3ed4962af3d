"""Cold entries packed into bytes records (exporter/ledger/packed.py) read, count, save and
evict exactly as the `Entry` objects they replace."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from exporter.clock import FakeClock
from exporter.ledger import Ledger
from exporter.ledger.attribution import HELD, INSPECTED, RESOLVED
from exporter.ledger.entry import BIT, SHARED_MAX, STATE_NAMES, Entry, Extra, shared_seen
from exporter.ledger.evicted import key
from exporter.ledger.packed import entry_of, finished, ids, lookup, pack, settled_of, unpack
from exporter.ledger.tables import LedgerTables
from exporter.taskdata import (
    FAILURE,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    SENT,
    SOURCE_EVENTS,
    SOURCE_PUBSUB,
    SOURCE_RECONCILE,
    STARTED,
    SUCCESS,
    TaskUpdate,
)

SLOTS = [s for s in Entry.__slots__ if s != "x"]
FINAL = (SUCCESS, FAILURE, REVOKED, REJECTED)


def U(task_id: str, state: str, source: str = SOURCE_EVENTS, **kw: Any) -> TaskUpdate:
    return TaskUpdate(task_id=task_id, state=state, source=source, **kw)


def _tables() -> LedgerTables:
    return Ledger(clock=FakeClock())._tables


def _fields(e: Entry) -> dict[str, Any]:
    out = {s: getattr(e, s) for s in SLOTS}
    out["x"] = {s: getattr(e.x, s) for s in Extra.__slots__}
    return out


def _settled_entry(t: LedgerTables, state: str = SUCCESS) -> Entry:
    e = Entry(state)
    e.seen |= BIT[RECEIVED] | BIT[STARTED] | BIT[state] | t.sources.bit(SOURCE_EVENTS)
    e.name, e.queue, e.worker = (t.strings.share(v) for v in ("app.t", "q", "w1@h"))
    e.received_at, e.started_at, e.finished_at = 100.0, 100.5, 101.25
    e.updated_at, e.settled, e.runtime = e.finished_at, 101.5, 0.75
    return e


def _stored(t: LedgerTables, record: bytes | None) -> bytes:
    """A packed record as the cold store keeps it (with its id and key)."""
    assert isinstance(record, bytes) and t.cold.put("a", record)
    return t.cold.take("a") or b""


def _round_trip(t: LedgerTables, e: Entry) -> Entry:
    before = _fields(e)
    record = _stored(t, pack(t, "a", e))
    back = unpack(t, "a", record)
    assert _fields(back) == before
    for field in ("sent_at", "received_at", "started_at", "finished_at", "updated_at"):
        assert repr(getattr(back, field)) == repr(before[field])  # (-0.0 stays -0.0)
    assert back.seen is shared_seen(e.seen)  # the one int object of its value
    assert settled_of(record) == e.settled and finished(record)
    return back


@pytest.mark.parametrize("state", FINAL)
def test_every_final_state_and_field_round_trips(state: str) -> None:
    t = _tables()
    e = _settled_entry(t, state)
    e.sent_at = 99.0
    e.seen |= RESOLVED | t.sources.bit(SOURCE_PUBSUB) | t.sources.bit("custom")
    e.runtime_done = e.wait_done = True
    _round_trip(t, e)
    assert len(pack(t, "a", e) or b"") + 33 <= 96  # 6 distinct values: pymalloc's 96 B class


def test_every_state_code_and_flag_bit_survives() -> None:
    t = _tables()
    for code, flags in itertools.product(STATE_NAMES, (0, RESOLVED, 1 << 10, 1 << 11)):
        e = _settled_entry(t)
        e.state = code
        e.seen |= flags
        for bit in range(16):  # every source bit up to MAX_SOURCES
            e.seen |= t.sources.bit(f"s{bit}")
        assert _round_trip(t, e).state == code


def test_shared_times_absent_fields_and_signed_zeros_round_trip() -> None:
    t = _tables()
    e = _settled_entry(t)
    e.received_at = e.started_at = e.finished_at = e.updated_at = e.settled = 5.0
    e.name = e.queue = e.worker = None
    e.runtime = -0.0  # equal to 0.0, not the same double
    e.sent_at = 0.0
    back = _round_trip(t, e)
    assert back.received_at is back.settled  # one float object again
    assert repr(back.runtime) == "-0.0" and repr(back.sent_at) == "0.0"
    e.runtime = float("nan")
    assert repr(unpack(t, "a", _stored(t, pack(t, "a", e))).runtime) == "nan"


def test_a_result_reconcile_found_is_one_double() -> None:
    t = _tables()
    e = Entry(SUCCESS)
    e.seen |= BIT[SUCCESS] | t.sources.bit(SOURCE_RECONCILE)
    e.finished_at = e.updated_at = e.settled = 1700000000.125
    back = _round_trip(t, e)
    assert back.finished_at is back.settled and back.received_at is None
    assert len(pack(t, "a", e) or b"") == 14 + 8


def test_a_heard_task_with_equal_times_as_distinct_objects_round_trips() -> None:
    t = _tables()
    e = _settled_entry(t)
    e.started_at = float("100.0")  # equal to received_at, another object
    e.settled = -0.0
    back = _round_trip(t, e)
    assert repr(back.settled) == "-0.0" and back.started_at == back.received_at


@pytest.mark.parametrize("settled_too", [True, False])
def test_states_heard_with_one_time_object_round_trip(settled_too: bool) -> None:
    t = _tables()
    e = _settled_entry(t)
    e.received_at = e.started_at = e.finished_at = e.updated_at = 7.5
    if settled_too:
        e.settled = e.finished_at
    back = _round_trip(t, e)
    assert back.received_at is back.finished_at is back.updated_at
    assert len(pack(t, "a", e) or b"") == 14 + 8 * (2 if settled_too else 3)


def test_extra_retries_and_failure_text_are_kept_aside() -> None:
    t = _tables()
    e = _settled_entry(t, FAILURE)
    x = e.extra()
    x.exc_type, x.exc_msg, x.args, x.kwargs, x.args_complete = "KeyError", "k", [1], {}, True
    x.parent_id, x.eta, x.retries = "p", 98.0, 2
    e.set_retries(3, 1, 2)
    back = _round_trip(t, e)
    assert back.x is x and t.extras == {key("a"): x}
    assert back.retry_total == 3 and back.retry_ev == 1 and back.retry_other == 2


def test_what_must_stay_an_object_is_not_packed() -> None:
    t = _tables()
    for state in (SENT, RECEIVED, STARTED, RETRY):
        e = _settled_entry(t)
        e.seen &= ~(BIT[SUCCESS])  # unfinished
        e.state = state
        assert pack(t, "a", e) is None
    for flag in (HELD, INSPECTED):
        e = _settled_entry(t)
        e.seen |= flag
        assert pack(t, "a", e) is None
    e = _settled_entry(t)
    e.runtime = 2  # an int would come back a float
    assert pack(t, "a", e) is None
    for i in range(SHARED_MAX):  # the interner is full: a new name has no number
        t.strings.share(f"n{i}")
    e = _settled_entry(t)
    e.name = "app.new"
    assert pack(t, "a", e) is None
    assert t.extras == {}


# -- a ledger that packs against one that never does ------------------------------------
def _pair(max_tasks: int = 1000, **kw: Any) -> tuple[Ledger, Ledger]:
    clock = FakeClock(1000.0)
    packing = Ledger(clock=clock, max_tasks=max_tasks, **kw)
    packing._tables.warm_size = 3  # (a default ledger keeps 20,000 warm)
    plain = Ledger(clock=clock, max_tasks=max_tasks, **kw)
    plain._tables.warm_size = 10**9
    return packing, plain


def _both(pair: tuple[Ledger, Ledger], updates: list[TaskUpdate]) -> list[int]:
    out = [led.apply_many(updates) for led in pair]
    assert out[0] == out[1]
    return out


def _packed(led: Ledger) -> int:
    return len(led._tables.cold)


def _stream(n: int, ts: float = 1000.0, first: int = 0) -> list[TaskUpdate]:
    out = []
    for i in range(first, first + n):
        tid, name, queue, worker = f"t{i}", f"app.t{i % 3}", f"q{i % 2}", f"w{i % 4}"
        at = ts + i
        out += [
            U(tid, RECEIVED, timestamp=at, name=name, queue=queue, worker=worker, retries=0),
            U(tid, STARTED, timestamp=at + 0.1),
        ]
        if i % 5 == 0:
            out.append(U(tid, FAILURE, timestamp=at + 0.2, exception_type="KeyError",
                         exception_message=f"bad {i}"))  # fmt: skip
        else:
            out.append(U(tid, SUCCESS, timestamp=at + 0.2, runtime=0.1 + i % 3))
    return out


def _late(n: int) -> list[TaskUpdate]:
    """What a second source says later, or a reconcile finds: duplicates and news."""
    out = []
    for i in range(n):
        tid = f"t{i}"
        out.append(U(tid, FAILURE if i % 5 == 0 else SUCCESS, SOURCE_PUBSUB, timestamp=1e3 + i))
        if i % 7 == 0:
            out.append(U(tid, RETRY, SOURCE_PUBSUB, retries=0, name=f"app.t{i % 3}"))
        if i % 11 == 0:
            out.append(U(tid, REVOKED, SOURCE_RECONCILE, timestamp=2e3 + i))
    return out


def _same(pair: tuple[Ledger, Ledger]) -> None:
    a, b = (led.counts() for led in pair)
    assert a.tasks == b.tasks and a.tasks_by_worker == b.tasks_by_worker
    assert a.exceptions == b.exceptions and a.evictions == b.evictions
    assert {k: h.cumulative for k, h in a.runtime.items()} == {
        k: h.cumulative for k, h in b.runtime.items()
    }
    assert a.evicted_ids == b.evicted_ids
    assert pair[0].recent() == pair[1].recent() and pair[0].recent(True) == pair[1].recent(True)
    assert pair[0].totals() == pair[1].totals()


def test_late_updates_to_packed_entries_count_exactly_as_before() -> None:
    pair = _pair(worker_label=True)
    _both(pair, _stream(200))
    assert _packed(pair[0]) >= 190 and _packed(pair[1]) == 0
    for u in _late(200):
        _both(pair, [u])
    assert pair[0]._tables.thaws > 0
    _same(pair)
    for i in range(200):
        assert pair[0].get(f"t{i}") == pair[1].get(f"t{i}")
    _both(pair, _stream(200, ts=5000.0, first=200))  # new tasks: the thawed ones cool again
    assert _packed(pair[0]) >= 390
    _same(pair)


def test_late_names_and_retries_wait_and_count_the_same() -> None:
    pair = _pair(label_grace=5.0)
    for i in range(40):  # results without names first, their names later
        _both(pair, [U(f"r{i}", SUCCESS, SOURCE_PUBSUB, timestamp=1e3 + i)])
    for i in range(40):
        _both(pair, [U(f"r{i}", RECEIVED, name="app.late", queue="q", timestamp=1e3 + i)])
    _both(pair, _stream(30))  # new tasks: the released ones cool
    assert _packed(pair[0]) >= 60
    for i in range(0, 40, 3):
        _both(pair, [U(f"r{i}", RETRY, SOURCE_EVENTS), U(f"r{i}", RECEIVED, retries=2)])
    _same(pair)
    pair[0]._tables.pending.grace = pair[1]._tables.pending.grace = 0.0  # (what waited)
    _same(pair)


def test_records_and_saved_state_read_the_same_packed_or_not() -> None:
    pair = _pair()
    _both(pair, _stream(100))
    _both(pair, _late(100))
    _both(pair, _stream(100, first=100))
    assert _packed(pair[0]) > 190
    saved = [led.export_state() for led in pair]
    assert saved[0] == saved[1]
    t = pair[0]._tables
    for tid in ids(t):
        assert pair[0].get(tid) == pair[1].get(tid)
        assert pair[0].sent_time(tid) == pair[1].sent_time(tid)
        value = lookup(t, tid)
        assert value is not None
        assert entry_of(t, tid, value).state == pair[1]._tables.entries[tid].state
    loaded = _pair()
    for led in loaded:
        led.import_state(saved[0])
    assert _packed(loaded[0]) > 80  # loaded entries are cold at once
    again = [led.export_state() for led in loaded]
    assert again[0] == again[1] and again[0]["seen"].keys() == saved[0]["seen"].keys()
    for tid in ids(t):
        assert loaded[0].get(tid) == loaded[1].get(tid)
    found = U("t1", SUCCESS, SOURCE_RECONCILE, timestamp=1001.2)
    assert not any(led.apply(found) for led in loaded)


def test_an_evicted_packed_entry_is_remembered_as_before() -> None:
    pair = _pair(max_tasks=50)  # (it remembers 25 evicted ids)
    for led in pair:
        led.expect_backfill()
    _both(pair, _stream(70))
    assert _packed(pair[0]) > 40
    _same(pair)
    evicted = [{f"t{i}" for i in range(70) if f"t{i}" in led._tables.evicted} for led in pair]
    assert evicted[0] == evicted[1] and len(evicted[0]) == 20
    assert pair[0]._tables.extras.keys() <= {key(i) for i in pair[0]._tables.cold.ids()}
    late = [
        U(f"t{i}", FAILURE if i % 5 == 0 else SUCCESS, SOURCE_RECONCILE, timestamp=1e3 + i + 0.2)
        for i in range(70)
    ]
    assert _both(pair, late) == [0, 0]  # evicted or packed: counted once, never again
    assert pair[0].below_watermark() == pair[1].below_watermark() == 20
    ids = [f"t{i}" for i in range(70)]
    assert pair[0].settled_ids(ids) == pair[1].settled_ids(ids) == set(ids)


def test_an_entry_unsettled_when_it_left_the_window_is_packed_once_settled() -> None:
    led = Ledger(clock=FakeClock(1000.0), max_tasks=1000)
    t = led._tables
    t.warm_size = 2
    led.apply(U("long", STARTED, name="app.t", queue="q", worker="w"))
    for i in range(5):
        led.apply_many(_stream(1, first=i))
    assert "long" in t.entries and "long" not in t.warm  # marked, out
    assert led.apply(U("long", SUCCESS, runtime=1.0))
    assert "long" in t.warm  # settled: back in the window
    led.apply_many(_stream(3, first=10))
    assert "long" in t.cold and "long" not in t.entries
    assert led.get("long").state == SUCCESS  # type: ignore[union-attr]
    assert not led.apply(U("long", SUCCESS, SOURCE_PUBSUB))  # thawed, deduped
    assert led.totals()["succeeded"] == 7  # (t0 and t10 failed)


def test_the_window_spans_the_held_ids_and_released_ones_are_packed() -> None:
    clock = FakeClock(1000.0)
    led = Ledger(clock=clock, max_tasks=1000, label_grace=5.0)
    t = led._tables
    t.warm_size = 2
    for i in range(10):  # results without a name: held for their labels
        led.apply(U(f"r{i}", SUCCESS, SOURCE_PUBSUB, timestamp=1e3))
    assert len(t.pending) == 10 and len(t.warm) == 10  # none tried while held
    clock.advance(6.0)
    led.apply_many(_stream(4))  # the grace ends: released, counted under "unknown"
    assert sum(f"r{i}" in t.cold for i in range(10)) >= 4
    led.apply_many(_stream(10, first=4))
    assert all(f"r{i}" in t.cold for i in range(10))
    assert led.totals()["succeeded"] == 10 + 11


def _saved(led: Ledger, store: dict[str, str]) -> dict[str, str]:
    """Apply one export to a dict, as the keeper applies it to its Redis hash."""
    out = led.export_state()
    for tid in out["drop"]:
        store.pop(tid, None)
    store.update(out["seen"])
    return store


@pytest.mark.parametrize("seed", range(4))
def test_the_saved_rows_are_the_same_when_packed_entries_are_evicted(seed: int) -> None:
    """A packed record evicted at or below the last save's watermark is not marked for the
    next save (no row of it can be kept); the rows saved stay those of a plain ledger."""
    rnd = __import__("random").Random(seed)
    clock = FakeClock(1000.0)
    pair = _pair(max_tasks=60)
    for led in pair:
        led._clock = clock
        led.expect_backfill()
    stores: list[dict[str, str]] = [{}, {}]
    first = skipped = 0
    for step in range(40):
        n = rnd.randrange(1, 25)
        _both(pair, _stream(n, ts=clock.time() - first, first=first))
        if rnd.random() < 0.4:  # a reconcile finds results events missed, or evicted ids'
            # (not of entries it holds: a late update thaws a packed one, whose turn for
            # eviction then differs from a plain ledger's)
            tids = [f"r{step}.{k}" for k in range(rnd.randrange(1, 10))]
            tids += [f"t{i}" for i in rnd.sample(range(first + n), min(5, first + n))]
            found = [
                U(tid, SUCCESS, SOURCE_RECONCILE, timestamp=clock.time() - rnd.uniform(0, 80))
                for tid in tids
                if lookup(pair[0]._tables, tid) is None
            ]
            _both(pair, found)
        first += n
        clock.advance(rnd.uniform(1, 30))
        if rnd.random() < 0.3:
            began = clock.time() - rnd.uniform(0, 60)
            for led in pair:
                led.reconcile_completed(began)
        if rnd.random() < 0.6:
            marked = [len(led._tables.dirty) for led in pair]
            assert marked[0] <= marked[1]
            skipped += marked[1] - marked[0]
            assert [_saved(led, s) for led, s in zip(pair, stores, strict=True)] == [stores[1]] * 2
        _same(pair)
    assert pair[0]._tables.evictions > 300 and skipped > 0
    assert _saved(pair[0], stores[0]) == _saved(pair[1], stores[1])
