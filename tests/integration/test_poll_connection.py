"""The poller keeps one broker connection from poll to poll, and a restart between polls
does not make a poll report the broker down: the stale connection is replaced at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from exporter.celery_io import CeleryIO, CeleryReader
from exporter.config import Config
from exporter.poller import Poller
from exporter.state import State
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker

pytestmark = pytest.mark.integration


def test_connection_held_across_polls_and_replaced_after_a_restart(
    private_redis: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    url = f"{private_redis.url}/0"
    start_worker({"TEST_BROKER_URL": url})
    config = Config(broker_url=url)
    state = State(config)
    reader = CeleryReader(CeleryIO(config))
    poller = Poller(state, reader)
    poller.poll()
    held: Any = reader._conn
    assert held is not None and state.snapshot.health.broker_up
    poller.poll()
    assert reader._conn is held  # no new connection per poll
    assert state.snapshot.health.broker_up and len(state.snapshot.workers) == 1

    private_redis.stop()
    private_redis.start()  # same port; the worker reconnects by itself
    snap = poller.poll()
    assert snap.health.broker_up, snap.health.last_error
    assert reader._conn is not held
    reader.close()
    assert reader._conn is None
