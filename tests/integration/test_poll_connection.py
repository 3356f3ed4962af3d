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


def _held(reader: CeleryReader) -> Any:
    """The connection kept between polls: the lean pidbox's or kombu's."""
    return reader._lean._conn if reader._lean is not None else reader._conn


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "kombu"])
def test_connection_held_across_polls_and_replaced_after_a_restart(
    private_redis: RedisServer, start_worker: Callable[..., Worker], lean: bool
) -> None:
    url = f"{private_redis.url}/0"
    start_worker({"TEST_BROKER_URL": url})
    config = Config(broker_url=url)
    state = State(config)
    reader = CeleryReader(CeleryIO(config), lean=lean)
    poller = Poller(state, reader)
    poller.poll()
    held: Any = _held(reader)
    assert held is not None and state.snapshot.health.broker_up
    assert (reader._lean is not None) == lean
    poller.poll()
    assert _held(reader) is held  # no new connection per poll
    assert state.snapshot.health.broker_up and len(state.snapshot.workers) == 1

    private_redis.stop()
    private_redis.start()  # same port; the worker reconnects by itself
    snap = poller.poll()
    assert snap.health.broker_up, snap.health.last_error
    assert _held(reader) is not held
    reader.close()
    assert _held(reader) is None
