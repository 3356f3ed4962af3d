"""Remediation's broker calls on RabbitMQ: a replay lands in its queue linked to the original,
a purge removes exactly the waiting messages, and purging a missing queue is an error (that the
executor reports), not a crash. Uses a unique queue on the shared RabbitMQ and removes it."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.celery_io import CeleryIO, control
from exporter.config import Config
from tests.support.common import wait_for

pytestmark = pytest.mark.integration


def _ready(io: CeleryIO, queue: str) -> int:
    with io.app.connection_for_write() as conn:
        channel = conn.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).message_count)
        finally:
            channel.close()


def test_retry_and_purge_on_rabbitmq(rabbitmq_url: str, unique: str) -> None:
    queue = f"ce-api-{unique}"
    io = CeleryIO(Config(broker_url=rabbitmq_url, result_backend=""))
    try:
        new_id = control.send_retry(io, "tests.add", [1, 2], {"z": 1}, queue, "orig-1", None, "p1")
        control.send_retry(io, "tests.add", [3, 4], {}, queue, "orig-2", "root-2", "p1")
        wait_for(lambda: _ready(io, queue) == 2, 10, what="two replays waiting")
        with io.app.connection_for_read() as conn:
            msg: Any = conn.SimpleQueue(queue).get(timeout=5)
            assert msg.headers["id"] == new_id and msg.headers["parent_id"] == "orig-1"
            assert msg.headers["root_id"] == "orig-1"
            assert msg.headers[control.RETRY_OF_HEADER] == "orig-1"
            assert msg.decode()[0:2] == [[1, 2], {"z": 1}]
            msg.requeue()
        wait_for(lambda: _ready(io, queue) == 2, 10, what="message back in the queue")
        assert control.purge_queue(io, queue) == 2
        assert _ready(io, queue) == 0
        with pytest.raises(Exception) as missing:
            control.purge_queue(io, f"{queue}-missing")
        assert "NOT_FOUND" in str(missing.value) or "404" in str(missing.value)
    finally:
        with io.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
        io.close()
