"""The event receiver's queue never grows without bound when the exporter dies.

The exporter is SIGKILLed while workers keep sending events, then restarted. On Redis the
event exchange is a PUBLISH fanout: nothing is stored for a dead receiver. The lean consumer
(the default on Redis) declares nothing at all: no queue, no binding. Celery's receiver
(`--events-consumer celery`) adds one binding, and its stable queue name keeps the binding set
at one member across restarts. On RabbitMQ the receiver's queue is exclusive and
auto-delete: gone while the exporter is down, back under the same name.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.support.common import wait_for
from tests.support.ledger import ExporterProc
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker, celery_app

pytestmark = pytest.mark.integration


def send_adds(app: Any, n: int, queue: str) -> None:
    with app.producer_or_acquire() as producer:
        for i in range(n):
            app.send_task("tests.add", (i, 1), queue=queue, producer=producer)


def events_up(exporter: ExporterProc) -> bool:
    key = ("celery_exporter_source_up", (("source", "events"),))
    return exporter.samples().get(key) == 1.0


@pytest.mark.parametrize(("consumer", "members"), [("auto", 0), ("celery", 1)])
def test_redis_event_queue_leaves_nothing_growing(
    redis_server: RedisServer, unique: str, consumer: str, members: int
) -> None:
    """On Redis, Celery's event exchange is a fanout carried by PUBLISH: events for a dead
    receiver are dropped by the server, not stored. What could pile up is the binding set
    (one member per receiver queue ever declared): the lean consumer adds none, Celery's
    receiver one, kept at one by the stable queue name."""
    broker = f"{redis_server.url}/7"
    client = redis.Redis(port=redis_server.port, db=7)
    client.flushdb()
    queue = f"evq-{unique}"
    env = {"TEST_BROKER_URL": broker, "TEST_BACKEND_URL": "", "TEST_DEFAULT_QUEUE": queue}
    worker = Worker(env, queues=queue, pool="threads", concurrency=2).wait_ready()
    app = celery_app(env)
    exporter = ExporterProc(
        ["--broker-url", broker, "--result-backend", "", "--events-consumer", consumer],
        f"q{consumer}{unique}",
    )
    try:
        exporter.start()
        wait_for(lambda: events_up(exporter), 30, what="event receiver up")
        send_adds(app, 30, queue)
        wait_for(lambda: exporter.counts()["succeeded"] >= 1, 30, what="events counted")
        bindings = client.smembers("_kombu.binding.celeryev")
        ours = [m for m in bindings if b"celery-ops-exporter" in m]
        assert len(ours) == members, bindings
        for _ in range(2):
            exporter.kill()
            before = client.dbsize()
            send_adds(app, 200, queue)
            # consumed and finished: the worker's own unacked bookkeeping is gone again too
            wait_for(
                lambda: client.llen(queue) == 0 and not client.exists("unacked", "unacked_index"),
                60,
                what="tasks consumed while down",
            )
            assert client.dbsize() <= before, sorted(client.scan_iter(count=1000))
            assert not list(client.scan_iter(match="celeryev*", count=1000))
            exporter.start()
            wait_for(lambda: events_up(exporter), 30, what="event receiver up again")
            assert client.smembers("_kombu.binding.celeryev") == bindings
    finally:
        exporter.cleanup()
        worker.stop()
        app.close()
        client.flushdb()
        client.close()


def test_rabbitmq_event_queue_goes_away_with_the_exporter(rabbitmq_url: str, unique: str) -> None:
    from kombu import Connection
    from kombu.exceptions import ChannelError

    queue = f"evq-{unique}"
    env = {"TEST_BROKER_URL": rabbitmq_url, "TEST_BACKEND_URL": "", "TEST_DEFAULT_QUEUE": queue}
    worker = Worker(env, queues=queue, pool="threads", concurrency=2).wait_ready()
    app = celery_app(env)
    exporter = ExporterProc(["--broker-url", rabbitmq_url, "--result-backend", ""], f"r{unique}")
    event_queue = f"celeryev.celery-ops-exporter.r{unique}"

    def declare() -> str:
        """'live' (exclusive to a running exporter), 'absent', or its message count."""
        with Connection(rabbitmq_url) as conn:
            channel = conn.channel()
            try:
                _name, messages, _consumers = channel.queue_declare(event_queue, passive=True)
                return str(messages)
            except ChannelError as exc:
                return {405: "live", 404: "absent"}.get(getattr(exc, "code", 0), repr(exc))

    try:
        exporter.start()
        wait_for(lambda: events_up(exporter), 30, what="event receiver up")
        wait_for(lambda: declare() == "live", 30, what="the exporter's queue")
        exporter.kill()
        send_adds(app, 200, queue)
        # exclusive/auto-delete (x-expires as a backstop): nothing accumulates while it is down
        wait_for(lambda: declare() == "absent", 30, what="queue deleted after the kill")
        assert declare() == "absent"  # still nothing after 200 tasks' events
        exporter.start()
        wait_for(lambda: declare() == "live", 30, what="queue back under the same name")
    finally:
        exporter.cleanup()
        worker.stop()
        app.close()


def test_events_off_is_reported_and_enable_events_turns_them_on(
    redis_server: RedisServer, unique: str
) -> None:
    """A worker without -E: the gauge says so; --enable-events-interval switches events on."""
    broker = f"{redis_server.url}/8"
    queue = f"noev-{unique}"
    env = {
        "TEST_BROKER_URL": broker,
        "TEST_BACKEND_URL": "",
        "TEST_DEFAULT_QUEUE": queue,
        "TEST_EVENTS": "0",
        "TEST_SENT_EVENT": "0",
    }
    worker = Worker(env, queues=queue, pool="threads", concurrency=2).wait_ready()
    app = celery_app(env)
    gauge = ("celery_exporter_task_events_enabled", ())
    received = ("celery_exporter_events_received_total", (("type", "task-received"),))
    off = ExporterProc(["--broker-url", broker, "--result-backend", ""], f"n{unique}")
    on = ExporterProc(
        ["--broker-url", broker, "--result-backend", "", "--enable-events-interval", "1"],
        f"m{unique}",
    )
    try:
        off.start()
        wait_for(lambda: events_up(off), 30, what="event receiver up")

        def busy_and_reported_off() -> bool:
            send_adds(app, 10, queue)  # keep the worker's processed count growing
            return off.samples().get(gauge) == 0.0

        wait_for(busy_and_reported_off, 60, interval=1.0, what="task_events_enabled 0")
        assert off.samples().get(received, 0.0) == 0.0
        off.stop()
        on.start()

        def events_flowing() -> bool:
            send_adds(app, 5, queue)
            return on.samples().get(received, 0.0) > 0

        wait_for(events_flowing, 60, interval=1.0, what="task events after enable_events")
        wait_for(lambda: on.samples().get(gauge) == 1.0, 30, what="task_events_enabled 1")
    finally:
        off.cleanup()
        on.cleanup()
        worker.stop()
        app.close()
