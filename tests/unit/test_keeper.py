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
