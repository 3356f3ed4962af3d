"""The cold store (exporter/ledger/cold.py) against a plain dict, and the ledger's eviction
order with packed and open entries mixed."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from exporter.clock import FakeClock
from exporter.ledger import Ledger
from exporter.ledger.cold import ColdStore
from exporter.ledger.evicted import KEY_MASK
from exporter.ledger.stored_id import id_of, key_of, packed_len
from exporter.taskdata import RECEIVED, STARTED, SUCCESS, TaskUpdate


def _ids(rng: random.Random, n: int) -> list[str]:
    """UUIDs (canonical and not), short and long ids, non-ASCII and a lone surrogate."""
    out = []
    for i in range(n):
        kind = i % 6
        if kind < 2:
            out.append(str(uuid.UUID(int=rng.getrandbits(128))))
        elif kind == 2:
            out.append(str(uuid.UUID(int=rng.getrandbits(128))).upper())  # not canonical
        elif kind == 3:
            out.append(f"t{i}")
        elif kind == 4:
            out.append("ü" * rng.randrange(1, 120) + str(i))
        else:
            out.append(f"\ud800{i}")
    return out


def _check(store: ColdStore, model: dict[str, bytes]) -> None:
    assert len(store) == len(model)
    assert list(store.ids()) == list(model)  # oldest first
    for task_id, packed in model.items():
        record = store.get(task_id)
        assert record is not None and record[: packed_len(record)] == packed
        assert id_of(record) == task_id and key_of(record) == hash(task_id) & KEY_MASK
        assert task_id in store


@pytest.mark.parametrize("seed", range(6))
def test_the_store_holds_what_a_dict_would_in_any_order_of_operations(seed: int) -> None:
    rng = random.Random(seed)
    store, model = ColdStore(), dict[str, bytes]()
    pool = _ids(rng, 3000)
    for step in range(12_000):
        roll = rng.random()
        task_id = rng.choice(pool)
        if roll < 0.5:
            if task_id not in model:
                packed = rng.randbytes(rng.choice((22, 30, 54, 70)))
                assert store.put(task_id, packed)
                model[task_id] = packed
        elif roll < 0.7:
            taken = store.take(task_id)
            held = model.pop(task_id, b"")
            assert (taken is None) == (held == b"")
            assert taken is None or taken[: packed_len(taken)] == held
        elif roll < 0.95:
            if model:
                oldest = next(iter(model))
                record = store.pop_oldest()
                assert id_of(record) == oldest
                del model[oldest]
        else:
            assert store.get(task_id) is None or task_id in model
        if step % 1000 == 0:
            _check(store, model)
    _check(store, model)
    for task_id in pool:
        assert (store.get(task_id) is not None) == (task_id in model)


def test_ids_alike_in_their_table_bits_stay_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids whose hashes agree in the table's 32 bits probe one chain; each finds its own
    record, and taking any of them keeps the others reachable (backward-shift deletion)."""
    store, model = ColdStore(), {}
    ids = [f"same{i}" for i in range(40)]

    class Same(str):
        def __hash__(self) -> int:
            return 7 + (int(self[4:]) << 40)  # equal low 32 bits, different keys

    for i, task_id in enumerate(ids):
        assert store.put(Same(task_id), bytes([i]) * 22)
        model[task_id] = bytes([i]) * 22
    for task_id in ids[::3]:
        assert store.take(Same(task_id)) is not None
        del model[task_id]
        for other in model:
            record = store.get(Same(other))
            assert record is not None and record[:22] == model[other]
    assert store.get(Same("same999")) is None


def test_ids_that_cannot_be_stored_are_refused() -> None:
    store = ColdStore()
    assert not store.put("x" * 256, b"r" * 22)  # over 255 bytes
    assert not store.put("é" * 128, b"r" * 22)  # 256 bytes of UTF-8
    assert store.put("é" * 127, b"r" * 22) and len(store) == 1


def test_positions_wrap_at_two_to_the_32(monkeypatch: pytest.MonkeyPatch) -> None:
    store, model = ColdStore(), {}
    store._base = 0xFFFFFFFF - 5000  # (as after four billion packs)
    rng = random.Random(1)
    for task_id in _ids(rng, 20_000):
        store.put(task_id, b"p" * 22)
        model[task_id] = b"p" * 22
        if len(model) > 3000:
            oldest = next(iter(model))
            assert id_of(store.pop_oldest()) == oldest
            del model[oldest]
    assert store._base < 20_000  # wrapped
    _check(store, model)
    assert store.before(store.tail()) and not store.before(store._base)


def test_a_uuid_takes_16_bytes_and_any_other_id_its_text() -> None:
    """Only the canonical form (lowercase, dashes in place) is kept as 16 bytes: anything
    else keeps its text, so every id reads back exactly as it came."""
    store = ColdStore()
    u = "0123abcd-4567-89ef-0123-456789abcdef"
    look_alike = [
        u.upper(),
        u[:9] + "A" + u[10:],  # one capital
        u[:9] + "g" + u[10:],  # not hex
        u[:9] + " " + u[10:],  # a space (which bytes.fromhex would skip)
        u[:8] + "0" + u[9:13] + "-" + u[14:],  # a dash moved
        "0x" + u[2:],
        u.replace("-", ""),
        "01234567-8901-2345-6789-012345678901",  # digits only: canonical too
    ]
    for task_id in [u, *look_alike]:
        assert store.put(task_id, b"p" * 22)
    assert len(store.get(u) or b"") == 22 + 16 + 9
    assert len(store.get(look_alike[-1]) or b"") == 22 + 16 + 9
    for task_id in look_alike[:-1]:
        assert len(store.get(task_id) or b"") == 22 + len(task_id) + 9
    assert list(store.ids()) == [u, *look_alike]


# -- the ledger: eviction order with packed and open entries ------------------------------
def U(task_id: str, state: str, **kw: Any) -> TaskUpdate:
    return TaskUpdate(task_id, state, "events", **kw)


def test_eviction_is_first_in_first_out_across_packed_and_open_entries() -> None:
    """A task still running when it left the warm window is evicted in its turn among the
    packed ones (not kept forever, not evicted early), and the bound always holds."""
    led = Ledger(clock=FakeClock(1000.0), max_tasks=20)
    t = led._tables
    t.warm_size = 2
    order = []
    for i in range(60):
        tid = f"t{i}"
        order.append(tid)
        led.apply(U(tid, RECEIVED, name="app.t", queue="q", worker="w"))
        led.apply(U(tid, STARTED))
        if i % 7:  # every 7th keeps running
            led.apply(U(tid, SUCCESS, runtime=0.1))
        assert len(t.entries) + len(t.cold) <= 20
        kept = [x for x in order if led.get(x) is not None]
        assert kept == order[-len(kept) :]  # the newest ones, whatever their form
    assert len(t.cold) > 10 and {"t42", "t49", "t56"} <= t.entries.keys()
    running = {x for x, *_ in led.running_tasks()}
    assert running == {f"t{i}" for i in range(40, 60) if i % 7 == 0}


def test_a_stale_window_reference_never_evicts_a_later_entry_of_its_id() -> None:
    led = Ledger(clock=FakeClock(1000.0), max_tasks=4)
    t = led._tables
    t.warm_size = 1
    for i in range(6):
        led.apply(U(f"a{i}", SUCCESS, name="n", queue="q"))
    led.apply(U("a0", SUCCESS, name="n", queue="q"))  # evicted long ago: a new entry
    assert led.get("a0") is not None
    led.apply(U("a0", RECEIVED, name="n", queue="q"))
    assert led.get("a0") is not None and len(t.entries) + len(t.cold) == 4


def test_compaction_closes_the_holes_and_keeps_order_and_stamps() -> None:
    store, rng = ColdStore(1000), random.Random(3)
    ids = _ids(rng, 3000)
    stamps = {}
    for n, task_id in enumerate(ids):
        if n % 97 == 0:
            stamps[n] = store.tail()  # (as cool_due stamps an entry that left open)
        assert store.put(task_id, b"p" * 22)
    for _ in range(400):
        store.pop_oldest()
    for task_id in ids[400::3]:
        assert store.take(task_id) is not None
    kept = [t for n, t in enumerate(ids) if n >= 400 and (n - 400) % 3]
    assert store.holes() == len(ids[400::3])
    remap = store.compact()
    assert store.holes() == 0 and list(store.ids()) == kept and len(store) == len(kept)
    for task_id in kept:
        assert store.get(task_id) is not None
    for n, stamp in stamps.items():
        older = sum(1 for m, t in enumerate(ids) if m < n and m >= 400 and (m - 400) % 3)
        if n <= 400:  # older than every record left: still older than the oldest
            assert not store.before(remap(stamp))
        else:  # after exactly the records stored before it
            assert (remap(stamp) - store.tail() + len(kept)) & 0xFFFFFFFF == older


def test_thaws_in_a_ledger_that_never_evicts_leave_no_growing_ring() -> None:
    """Late updates of packed entries unpack them and new (running) tasks push them out of
    the window to be packed again: a hole in the ring per thaw, with no eviction to pass
    them. They are closed once they outnumber the records, and the running tasks' eviction
    turns move with the positions."""
    led = Ledger(clock=FakeClock(1000.0), max_tasks=100_000)
    t = led._tables
    t.warm_size = 2
    for i in range(300):
        led.apply(U(f"t{i}", SUCCESS, name="app.t", queue="q"))
    most, at = 0, 0
    for n in range(3000):
        while f"t{at % 300}" not in t.cold:
            at += 1
        assert not led.apply(U(f"t{at % 300}", SUCCESS, name="app.t", queue="q"))  # a thaw
        led.apply(U(f"r{n}", STARTED, name="app.r", queue="q"))  # runs on, never packed
        most = max(most, t.cold.holes() - len(t.cold))
    assert t.thaws == 3000 and 0 < most <= 1024 + 1
    assert led.totals()["succeeded"] == 300 and led.counts().evictions == 0
    assert all(led.get(f"t{i}") is not None for i in range(300))
    # The running tasks left the window before the packed ones still stored: they go first.
    t.max_tasks = len(t.entries) + len(t.cold) - 2000
    led.apply(U("last", SUCCESS, name="app.t", queue="q"))  # 2,001 go
    running = {x for x, *_ in led.running_tasks()}
    assert running == {f"r{n}" for n in range(2001, 3000)}
    assert all(led.get(f"t{i}") is not None for i in range(300))
