"""An interrupted reconcile pass is resumed where it stopped, so a backend larger than the
ledger is not counted twice; after a Redis restart (new run_id) the pass starts over."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from exporter.clock import FakeClock
from exporter.config import Config
from exporter.keeper.gate import StartGate
from exporter.keeper.store import LedgerStore
from exporter.sources.reconcile import ReconcileSource
from exporter.state import State
from tests.support.redisserver import RedisServer

RESULTS = 3000


@pytest.fixture
def client(private_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=private_redis.port)
    pipe = client.pipeline()
    for i in range(RESULTS):
        doc = {
            "status": "SUCCESS",
            "result": i,
            "name": "tests.add",
            "queue": "celery",
            "date_done": f"2023-11-14T{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}",
        }
        pipe.set(f"celery-task-meta-{i:08d}", json.dumps(doc))
    pipe.execute()
    yield client
    client.close()


def make(client: redis.Redis) -> tuple[State, ReconcileSource]:
    # A ledger of 200 ids remembers about 100 evicted ones: walking 3,000 results gives up
    # most of them, which only the watermark of a completed pass covers.
    config = Config(
        broker_url="redis://localhost:6379/0", ledger_max_tasks=200, reconcile_batch=100
    )
    state = State(config, clock=FakeClock(2_000_000_000.0))
    return state, ReconcileSource(state, lambda: client, StartGate())


def succeeded(state: State) -> int:
    return sum(v for (_n, _q, c), v in state.ledger.counts().tasks.items() if c == "succeeded")


def interrupt_after(
    rec: ReconcileSource,
    monkeypatch: pytest.MonkeyPatch,
    chunks: int,
    save_at: tuple[int, LedgerStore] | None = None,
) -> None:
    real = rec._parse
    calls = [0]

    def parse(*args: Any) -> Any:
        calls[0] += 1
        if save_at is not None and calls[0] == save_at[0]:
            save_at[1].save(rec.state.ledger)  # the saver's last run before the "SIGKILL"
        if calls[0] > chunks:
            raise redis.ConnectionError("connection reset (test)")
        return real(*args)

    monkeypatch.setattr(rec, "_parse", parse)


def test_interrupted_pass_resumes_and_counts_each_result_once(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, rec = make(client)
    interrupt_after(rec, monkeypatch, 15)
    with pytest.raises(redis.ConnectionError):
        rec.run_once()
    assert state.ledger.counts().evicted_ids_dropped > 0  # the ids a fresh pass would recount
    monkeypatch.undo()
    rec.run_once()
    assert rec.resumed == 1
    assert succeeded(state) == RESULTS
    # The completed pass raised the watermark over everything: the next pass counts nothing.
    assert rec.run_once() == 0
    assert succeeded(state) == RESULTS


def test_a_killed_exporter_resumes_the_pass_from_its_saved_state(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The position is saved with the counts it produced: a new exporter loading the last
    save resumes there and counts what the dead one folded after that save exactly once."""
    state, rec = make(client)
    store = LedgerStore(client, "", "resume-test")
    interrupt_after(rec, monkeypatch, 15, save_at=(10, store))
    with pytest.raises(redis.ConnectionError):
        rec.run_once()  # ... and the process dies here, without another save
    assert state.ledger.counts().evicted_ids_dropped > 0
    assert state.ledger.pass_position is not None
    monkeypatch.undo()
    again, rec2 = make(client)
    assert LedgerStore(client, "", "resume-test").load(again.ledger)
    assert again.ledger.pass_position is not None
    rec2.run_once()
    assert rec2.resumed == 1
    assert succeeded(again) == RESULTS
    assert again.ledger.pass_position is None  # completed: nothing left to resume


def test_a_restarted_redis_starts_the_pass_over(
    client: redis.Redis, private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, rec = make(client)
    interrupt_after(rec, monkeypatch, 15)
    with pytest.raises(redis.ConnectionError):
        rec.run_once()
    monkeypatch.undo()
    private_redis.stop()  # the append-only file keeps the results; the run_id changes
    private_redis.start()
    scanned_before = state.source_health()["reconcile"].stats.keys_scanned
    rec.run_once()
    assert rec.resumed == 0
    scanned = state.source_health()["reconcile"].stats.keys_scanned - scanned_before
    assert scanned >= RESULTS  # walked from the first cursor again
