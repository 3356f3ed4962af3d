"""Pub/sub handling, reconcile passes and the saved ledger state, on fakeredis."""

from __future__ import annotations

import json
import pickle
from typing import Any

import fakeredis
import pytest

from exporter.clock import FakeClock
from exporter.config import Config
from exporter.keeper.gate import StartGate
from exporter.keeper.store import LedgerStore
from exporter.sources.reconcile import ReconcileSource
from exporter.sources.results import ResultsSource
from exporter.state import SourceStatistics, State


def result(
    status: str = "SUCCESS", name: str | None = "tests.add", when: str | None = None, **kw: Any
) -> bytes:
    doc: dict[str, Any] = {
        "status": status,
        "result": None,
        "traceback": None,
        "children": [],
        "date_done": when or "2026-11-28T10:00:00+00:00",
        **kw,
    }
    if name:
        doc["name"] = name
        doc["queue"] = "celery"
    return json.dumps(doc).encode()


@pytest.fixture
def redis_client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def make_state(clock: FakeClock | None = None, **cfg: Any) -> State:
    config = Config(broker_url="redis://localhost:6379/0", **cfg)
    return State(config, clock=clock or FakeClock(2_000_000_000.0))


def succeeded(state: State) -> int:
    return sum(v for (_n, _q, c), v in state.ledger.counts().tasks.items() if c == "succeeded")


def health(state: State, name: str) -> SourceStatistics:
    return state.source_health()[name].stats


def test_pubsub_batch_counts_and_skips(redis_client: fakeredis.FakeRedis) -> None:
    state = make_state()
    src = ResultsSource(state, lambda: redis_client, StartGate())
    batch = [
        (b"celery-task-meta-a", result()),
        (b"celery-task-meta-a", result()),  # the same result twice (e.g. re-published)
        (b"celery-task-meta-b", pickle.dumps({"status": "SUCCESS"})),
        (b"celery-task-meta-c", b"{broken"),
        (
            b"celery-task-meta-d",
            result("FAILURE", result={"exc_type": "KeyError", "exc_message": ["k"]}),
        ),
    ]
    assert src.handle(batch) == 2
    assert succeeded(state) == 1
    detail = health(state, "pubsub")
    assert detail.skipped["pickle"] == 1 and detail.skipped["invalid_json"] == 1
    assert detail.parse_errors == 1
    assert state.ledger.counts().exceptions == {("tests.add", "KeyError"): 1}


def test_a_wake_up_without_messages_writes_nothing(redis_client: fakeredis.FakeRedis) -> None:
    """The health check's PONG wakes the listener with no message: no ledger write (the
    keeper would save, /metrics render), no last-message time; a batch of junk still is
    a message, and is counted as skipped without a ledger write either."""
    state = make_state()
    src = ResultsSource(state, lambda: redis_client, StartGate())
    changes, token = state.ledger.changes, state.change_token()
    assert src.handle([]) == 0
    assert state.ledger.changes == changes and state.change_token() == token
    assert src.handle([(b"celery-task-meta-c", b"{broken")]) == 0
    assert state.ledger.changes == changes
    assert health(state, "pubsub").parse_errors == 1


def test_pubsub_keyprefix_filters_other_apps(redis_client: fakeredis.FakeRedis) -> None:
    state = make_state(broker_transport_options={"global_keyprefix": "app1:"})
    src = ResultsSource(state, lambda: redis_client, StartGate())
    src.handle([(b"app2:celery-task-meta-x", result()), (b"app1:celery-task-meta-y", result())])
    assert succeeded(state) == 1
    assert health(state, "pubsub").skipped["bad_key"] == 1


def test_pubsub_skips_results_of_other_databases() -> None:
    server = fakeredis.FakeServer()
    ours, other = fakeredis.FakeRedis(server=server, db=0), fakeredis.FakeRedis(server=server, db=1)
    ours.set("celery-task-meta-mine", result())
    other.set("celery-task-meta-theirs", result())
    state = make_state()
    src = ResultsSource(state, lambda: ours, StartGate())
    src._verify_db = True  # what _check_other_dbs decides when INFO shows db1 in use
    src.handle([(b"celery-task-meta-mine", result()), (b"celery-task-meta-theirs", result())], ours)
    assert succeeded(state) == 1
    assert health(state, "pubsub").skipped["other_db"] == 1


def fill(client: fakeredis.FakeRedis, n: int, prefix: str = "", status: str = "SUCCESS") -> None:
    pipe = client.pipeline()
    for i in range(n):
        pipe.set(
            f"{prefix}celery-task-meta-{status}-{i}",
            result(status, when="2023-11-14T22:13:20+00:00"),
        )  # the fake clock's start
    pipe.execute()


def test_reconcile_counts_backend_once(redis_client: fakeredis.FakeRedis) -> None:
    fill(redis_client, 250)
    fill(redis_client, 30, status="FAILURE")
    redis_client.set("celery-task-meta-retrying", result("RETRY", retries=0))
    redis_client.set("celery-task-meta-pickled", pickle.dumps(1))
    redis_client.set("unrelated", b"x")
    state = make_state(reconcile_batch=50)
    rec = ReconcileSource(state, lambda: redis_client, StartGate())
    assert rec.run_once() == 281  # 280 final results + the numbered RETRY
    assert rec.run_once() == 0  # nothing new: every result already counted
    detail = health(state, "reconcile")
    assert detail.runs == 2 and detail.keys_scanned == 2 * 282
    assert detail.skipped["pickle"] == 2
    assert succeeded(state) == 250


def test_reconcile_rate_limit_is_respected(redis_client: fakeredis.FakeRedis) -> None:
    import time

    fill(redis_client, 300)
    state = make_state(reconcile_batch=100, reconcile_max_keys_per_second=1000)
    rec = ReconcileSource(state, lambda: redis_client, StartGate())
    started = time.monotonic()
    rec.run_once()
    assert time.monotonic() - started >= 0.25  # 300 keys at 1000/s


def test_restart_with_saved_state_stays_exact(redis_client: fakeredis.FakeRedis) -> None:
    """Counted, saved, more counted, then 'SIGKILL': the new ledger recounts only the rest."""
    clock = FakeClock(1_700_000_000.0)
    when = "2023-11-14T22:13:30+00:00"  # just after the fake clock's start
    first = make_state(clock)
    store = LedgerStore(redis_client, "", "test")
    for i in range(100):
        redis_client.set(f"celery-task-meta-{i}", result(when=when))
    ResultsSource(first, lambda: redis_client, StartGate()).handle(
        [(f"celery-task-meta-{i}".encode(), result(when=when)) for i in range(60)]
    )
    store.save(first.ledger)
    # Counted after the last save, then the exporter dies: these 20 are lost from memory.
    ResultsSource(first, lambda: redis_client, StartGate()).handle(
        [(f"celery-task-meta-{i}".encode(), result(when=when)) for i in range(60, 80)]
    )
    assert succeeded(first) == 80
    second = make_state(clock)
    assert LedgerStore(redis_client, "", "test").load(second.ledger)
    assert succeeded(second) == 60
    ReconcileSource(second, lambda: redis_client, StartGate()).run_once()
    assert succeeded(second) == 100  # the 40 never saved are counted once, the 60 not again


def test_store_drops_entries_below_watermark_and_recovers_after_failure(
    redis_client: fakeredis.FakeRedis,
) -> None:
    clock = FakeClock(1_700_000_000.0)
    state = make_state(clock)
    store = LedgerStore(redis_client, "pfx:", "inst")
    fill(redis_client, 10)
    rec = ReconcileSource(
        state, lambda: redis_client, StartGate(), lambda: store.save(state.ledger)
    )
    rec.run_once()  # saves at the end
    assert redis_client.hlen(store.seen_key) == 10
    assert 0 < redis_client.ttl(store.counters_key) <= 7 * 86_400
    clock.advance(3600)
    rec.run_once()  # the watermark passes the old results: nothing left to remember
    assert redis_client.hlen(store.seen_key) == 0

    class Broken:
        def pipeline(self, **_: Any) -> Any:
            raise ConnectionError("down")

    ResultsSource(state, lambda: redis_client, StartGate()).handle(
        [(f"celery-task-meta-new{i}".encode(), result("FAILURE")) for i in range(5)]
    )
    bad = LedgerStore(Broken(), "pfx:", "inst")
    with pytest.raises(ConnectionError):
        bad.save(state.ledger)
    store.save(state.ledger)  # the failed save's changes are not lost
    assert redis_client.hlen(store.seen_key) == 5


def test_unreadable_saved_state_starts_from_zero(redis_client: fakeredis.FakeRedis) -> None:
    store = LedgerStore(redis_client, "", "x")
    redis_client.set(store.counters_key, b"\x80\x04not json")
    state = make_state()
    assert not store.load(state.ledger)
    assert state.ledger.counts().tasks == {}
    redis_client.set(store.counters_key, json.dumps({"v": 99, "tasks": [["a", "b", "c", 5]]}))
    assert store.load(state.ledger)  # a newer format is ignored, not misread
    assert state.ledger.counts().tasks == {}


def test_saved_dedup_entries_stay_bounded_through_a_long_pass(
    redis_client: fakeredis.FakeRedis,
) -> None:
    """Evicted ids are saved while remembered; once the evicted-id memory gives them up they
    must leave the store too, or a long reconcile pass (many saves, random date order)
    grows the saved hash far past the ledger's own bound."""
    import random

    from exporter.ledger import Ledger
    from exporter.taskdata import SOURCE_RECONCILE, SUCCESS, TaskUpdate

    ledger = Ledger(clock=FakeClock(2_000_000_000.0), max_tasks=2000)
    ledger.expect_backfill()
    store = LedgerStore(redis_client, "", "test")
    order = list(range(50_000))
    random.Random(1).shuffle(order)  # SCAN hands results over in no date order
    for n, i in enumerate(order):
        update = TaskUpdate(
            task_id=f"id{i}", state=SUCCESS, source=SOURCE_RECONCILE, timestamp=1.7e9 + i
        )
        ledger.apply(update)
        if n % 100 == 0:
            store.save(ledger)
    store.save(ledger)
    bound = 2000 + len(ledger._tables.evicted)
    assert len(ledger._tables.persisted) <= bound
    assert redis_client.hlen("celery-ops-exporter:test:seen") <= bound
