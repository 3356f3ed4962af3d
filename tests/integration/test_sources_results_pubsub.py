"""The result pub/sub listener against a real Redis: batched reads, exact counts, health PING.

Celery's Redis backend PUBLISHes each result as its own message. At a quiet cluster's pace
(a result every few ms) the listener must still wake once per linger, not once per result,
and hand the whole batch to `handle` (one ledger lock). Every result counts exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import redis

from exporter.backend_redis import backend_client
from exporter.config import Config
from exporter.keeper.gate import StartGate
from exporter.sources.results import ResultsSource
from exporter.state import State
from tests.support.common import wait_for
from tests.support.redisserver import RedisServer

pytestmark = pytest.mark.integration


def body(task_id: str) -> bytes:
    return json.dumps(
        {
            "status": "SUCCESS",
            "result": 3,
            "traceback": None,
            "children": [],
            "date_done": "2026-01-01T00:00:00.000000+00:00",
            "task_id": task_id,
            "name": "tests.add",
        }
    ).encode()


class Recording(ResultsSource):
    """The real source, recording the size of every batch it is handed."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.sizes: list[int] = []
        self.lock = threading.Lock()

    def handle(self, batch: list[tuple[bytes, bytes]], client: Any = None) -> int:
        with self.lock:
            self.sizes.append(len(batch))
        return super().handle(batch, client)


def counted(state: State) -> int:
    return sum(state.ledger.counts().tasks.values())


def test_trickling_results_are_read_in_batches_and_counted_once(
    redis_server: RedisServer,
) -> None:
    url = f"{redis_server.url}/7"
    # label_grace 0: these results carry no name, and this test is about batching, not labels
    state = State(Config(broker_url=url, result_backend=url, label_grace=0.0))
    boot = StartGate()
    boot.loaded.set()
    boot.reconciled.set()
    source = Recording(state, lambda: backend_client(state.config, pubsub=True), boot)
    publisher = redis.Redis.from_url(url)
    patterns = publisher.execute_command("PUBSUB", "NUMPAT")
    source.start()
    try:
        assert source.connected.wait(10)
        # the server has the PSUBSCRIBE before the first result is published
        wait_for(lambda: publisher.execute_command("PUBSUB", "NUMPAT") > patterns, 10)
        n = 60
        sent_at = []
        for i in range(n):  # a result every 5 ms, as ~200 results/s would arrive
            # stored, then published, as Celery's backend does: when other databases of the
            # shared server hold keys, the source counts only results stored in its own
            publisher.set(f"celery-task-meta-t{i}", body(f"t{i}"))
            publisher.publish(f"celery-task-meta-t{i}", body(f"t{i}"))
            sent_at.append(time.monotonic())
            time.sleep(0.005)
        publisher.publish("celery-task-meta-t0", body("t0"))  # a duplicate counts once
        wait_for(lambda: sum(source.sizes) >= n + 1, timeout=60)
        time.sleep(0.2)
        assert counted(state) == n
        assert sum(source.sizes) == n + 1
        # One wake-up per linger (at least 50 ms), not per result: at most one batch per 50 ms
        # window of publishing (about 7 here; more only if this publisher was descheduled between
        # publishes on a busy machine). Waking per message (get_message) hands over ~61.
        windows, start = 0, float("-inf")
        for t in sent_at:
            if t - start > 0.05:
                windows, start = windows + 1, t
        assert len(source.sizes) <= windows + 2, (source.sizes, windows)
        publisher.delete(*(f"celery-task-meta-t{i}" for i in range(n)))
    finally:
        source.stop()
    assert not source.connected.is_set() or not source._bg.running
