"""The keeper of saved ledger state: not a task source (the sitrep's symptom), its own
health, and what it saves (the last run times per task name) surviving a restart."""

from __future__ import annotations

import json
from typing import Any

import fakeredis

from exporter.api.sitrep import build_sitrep
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.keeper import Keeper, LedgerStore, StartGate
from exporter.sources import build_sources
from exporter.state import State
from exporter.taskdata import SOURCE_EVENTS, STARTED, SUCCESS, TaskUpdate
from tests.support.common import wait_for


class _Broken:
    def pipeline(self, **_: Any) -> Any:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")


def _state() -> State:
    config = Config(broker_url="memory://", result_backend="redis://127.0.0.1:1/0", events=False)
    return State(config, FakeClock(1_700_000_000.0))


def _no_keeper_in_sources(state: State) -> None:
    report = build_sitrep(state)
    names = {s.name for s in report.health.sources}
    assert names <= {"events", "pubsub", "reconcile"}, names
    lines = report.immediate_actions + report.watch_items
    assert not [line for line in lines if "persist" in line or "keeper" in line], lines


def test_sitrep_never_reports_the_keeper_as_a_task_source() -> None:
    state = _state()
    redis = fakeredis.FakeRedis()
    gate = StartGate()
    keeper = Keeper(state, LedgerStore(redis, "", "x"), gate)
    sources = build_sources(state, None, gate, keeper.save)
    assert "keeper" not in {s.name for s in sources}
    assert "persist" not in {s.name for s in sources}
    _no_keeper_in_sources(state)  # from start, before any load or save
    keeper.start()
    try:
        wait_for(gate.loaded.is_set, 10, what="saved state loaded")
    finally:
        keeper.stop()
    _no_keeper_in_sources(state)  # loaded, no save yet (the first reconcile has not run)
    gate.reconciled.set()
    keeper.save()
    assert state.keeper_health.saves == 1 and state.keeper_health.ok
    assert state.keeper_health.last_save_at == state.clock.time()
    _no_keeper_in_sources(state)
    # A failing save is the keeper's own line, not a task source being down.
    keeper.store = LedgerStore(_Broken(), "", "x")
    keeper.save()
    _no_keeper_in_sources(state)
    health = state.keeper_health
    assert not health.ok and health.failures == 1 and health.saves == 1
    assert health.last_save_at == state.clock.time()
    report = build_sitrep(state)
    assert [line for line in report.watch_items if line.startswith("Saving the task counts")]


def test_last_run_times_are_saved_and_loaded() -> None:
    state = _state()
    redis = fakeredis.FakeRedis()
    store = LedgerStore(redis, "", "x")
    now = state.clock.time()
    state.ledger.apply(TaskUpdate("a", STARTED, SOURCE_EVENTS, name="t", timestamp=now - 20))
    state.ledger.apply(TaskUpdate("a", SUCCESS, SOURCE_EVENTS, name="t", timestamp=now - 10))
    store.save(state.ledger)
    again = _state()
    assert store.load(again.ledger)
    assert again.ledger.last_times() == {"t": {STARTED: now - 20, SUCCESS: now - 10}}
    # A save from before last run times were saved still loads (without them).
    counters = json.loads(redis.get(store.counters_key))
    del counters["last"]
    redis.set(store.counters_key, json.dumps(counters))
    old = _state()
    assert store.load(old.ledger)
    assert old.ledger.last_times() == {}
    assert old.ledger.counts().tasks == again.ledger.counts().tasks
    # Junk rows are dropped, not misread; a good row beside them still loads.
    counters["last"] = [
        ["t", [1.7e9, "x"]],
        ["u", [None, None, 1.6e9]],
        "junk",
        ["v", [float("inf")]],
    ]
    redis.set(store.counters_key, json.dumps(counters))
    junk = _state()
    assert store.load(junk.ledger)
    assert junk.ledger.last_times() == {"u": {STARTED: 1.6e9}}


def test_the_periodic_save_skips_an_unchanged_ledger() -> None:
    """Idle, the 10 s save found nothing new: it writes only after a write, a move of the
    reconcile pass, a failed save, or RESAVE_AFTER (the keys' TTL is renewed by saves)."""
    from exporter.keeper.service import RESAVE_AFTER

    state = _state()
    clock = state.clock
    assert isinstance(clock, FakeClock)
    gate = StartGate()
    gate.open()
    redis = fakeredis.FakeRedis()
    keeper = Keeper(state, LedgerStore(redis, "", "x"), gate)
    keeper.save_if_changed()
    assert state.keeper_health.saves == 1  # the first save
    version = state.change_token()
    keeper.save_if_changed()
    clock.advance(RESAVE_AFTER - 1)
    keeper.save_if_changed()
    assert state.keeper_health.saves == 1 and state.change_token() == version
    state.ledger.apply(TaskUpdate("a", SUCCESS, SOURCE_EVENTS, name="t", queue="q"))
    keeper.save_if_changed()
    assert state.keeper_health.saves == 2
    state.ledger.note_pass(("run", 7, clock.time()))  # a reconcile pass moved on
    keeper.save_if_changed()
    assert state.keeper_health.saves == 3
    clock.advance(RESAVE_AFTER)
    keeper.save_if_changed()
    assert state.keeper_health.saves == 4
    keeper.save()  # after a reconcile and on stop: always
    assert state.keeper_health.saves == 5
    good, keeper.store = keeper.store, LedgerStore(_Broken(), "", "x")
    keeper.save_if_changed()
    assert state.keeper_health.saves == 5  # unchanged: not even tried
    keeper.save()
    assert state.keeper_health.failures == 1
    keeper.store = good
    keeper.save_if_changed()  # the failed save is made good at the next period
    assert state.keeper_health.saves == 6 and state.keeper_health.ok
    again = _state()
    assert keeper.store.load(again.ledger)
    assert again.ledger.counts().tasks == state.ledger.counts().tasks
