"""The pub/sub read loop sleeps while nothing arrives, and its Waker ends it at once.

Against a real Redis: an idle loop with a Waker runs no `tick` (the loop without one woke every
`WAIT`, four times a second for an exporter's two listeners); a message still wakes it; a
`Waker.set()` makes it return without waiting for anything else.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from exporter.pubsub_batch import WAIT, Message, Waker, read_batches
from tests.support.common import wait_for
from tests.support.redisserver import RedisServer

pytestmark = pytest.mark.integration


def test_idle_loop_sleeps_until_a_message_or_its_waker(redis_server: RedisServer) -> None:
    client = redis.Redis(port=redis_server.port, db=14)
    pubsub = client.pubsub()
    pubsub.psubscribe("waker-test.*")
    wait_for(lambda: pubsub.get_message(timeout=1), 10, what="psubscribe confirmation")
    conn = pubsub.connection
    waker, stopped = Waker(), threading.Event()
    ticks: list[float] = []
    got: list[Message] = []

    def run() -> None:
        read_batches(
            conn, stopped.is_set, got.extend, linger=0.0, tick=lambda: ticks.append(1), waker=waker
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    idle_from = time.monotonic()
    # Idle for six times WAIT: the loop must not have woken once.
    wait_for(lambda: time.monotonic() - idle_from > 6 * WAIT, 10, interval=0.1, what="idle")
    assert ticks == []
    client.publish("waker-test.a", b"one")
    wait_for(lambda: got, 10, what="the message")
    assert got == [(b"waker-test.a", b"one")]
    assert len(ticks) == 1  # the wake-up the message made
    stopped.set()
    waker.set()
    thread.join(5)
    assert not thread.is_alive()
    pubsub.close()
    client.close()


def test_buffered_messages_are_drained_in_full_batches_then_the_rest(
    redis_server: RedisServer,
) -> None:
    """The hiredis drain (pubsub_batch._drain_hiredis) on a real connection: what is buffered
    is handed over in batches of `max_batch`, in order, and nothing else (PONGs, confirmations)."""
    from exporter.pubsub_batch import _hiredis_of

    client = redis.Redis(port=redis_server.port, db=14)
    pubsub = client.pubsub()
    pubsub.psubscribe("drain-test.*")
    wait_for(lambda: pubsub.get_message(timeout=1), 10, what="psubscribe confirmation")
    conn = pubsub.connection
    assert _hiredis_of(conn) is not None  # the path under test
    for i in range(7):
        client.publish(f"drain-test.{i}", str(i).encode())
    conn.send_command("PING")
    wait_for(lambda: conn.can_read(0), 10, what="buffered messages")
    batches: list[list[Message]] = []

    def handle(batch: list[Message]) -> None:
        batches.append(batch)
        if sum(len(b) for b in batches) >= 7:
            done.set()

    done, waker = threading.Event(), Waker()
    read_batches(conn, done.is_set, handle, linger=0.0, max_batch=3, waker=waker)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [m for b in batches for m in b] == [
        (f"drain-test.{i}".encode(), str(i).encode()) for i in range(7)
    ]
    pubsub.close()
    client.close()
