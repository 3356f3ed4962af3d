"""Worker lifecycle from real events: a real worker stopped with SIGTERM says goodbye
(worker-offline) and is reported down within seconds, on Redis (the lean consumer) and on
RabbitMQ (Celery's receiver); its restart brings it back at once. Real event messages
forged from many host names stay within --max-workers.

Every exporter here polls every 30 s with --worker-timeout 3600, so only the worker-offline
or worker-online event can explain a change seen within a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kombu import Connection

from tests.support.common import wait_for
from tests.support.exporter_process import ExporterProcess, fresh_db
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker, celery_app

pytestmark = pytest.mark.integration

RunExporter = Callable[..., ExporterProcess]
StartWorker = Callable[..., Worker]
SLOW = ("--poll-interval", "30", "--worker-timeout", "3600")
# The goodbye is applied in the event's batch: measured 0.05 s from the worker's exit to up 0
# on Redis and on RabbitMQ; 8 s allows a loaded machine and is still far below any poll.
FEW_SECONDS = 8.0


@pytest.fixture
def amqp_queue(rabbitmq_url: str, unique: str) -> Iterator[str]:
    name = f"ce-offline-{unique}"
    yield name
    with Connection(rabbitmq_url) as conn:
        channel = conn.channel()
        try:
            channel.queue_delete(name)
        except conn.channel_errors:
            pass  # already gone
        finally:
            try:
                channel.close()
            except conn.connection_errors + conn.channel_errors:
                pass  # the broker closed the channel after an error


def sigterm(worker: Worker) -> None:
    """A warm shutdown (SIGTERM), which sends worker-offline; the fixture cleans up later."""
    worker.proc.terminate()
    worker.proc.wait(20)


def assert_down_within_seconds(exporter: ExporterProcess, host: str, queue: str) -> None:
    """Up 0 and no worker on its queue within FEW_SECONDS of the worker's exit."""
    exporter.wait_value("celery_worker_up", lambda v: v == 0, timeout=FEW_SECONDS, hostname=host)
    exporter.wait_value(
        "celery_queue_workers", lambda v: v == 0, timeout=FEW_SECONDS, queue_name=queue
    )
    assert exporter.value("celery_worker_up", hostname=host) == 0  # kept until the purge


def test_sigterm_worker_is_down_at_once_and_back_on_restart_redis(
    redis_server: RedisServer, run_exporter: RunExporter, start_worker: StartWorker, unique: str
) -> None:
    url = fresh_db(redis_server, 12)
    queue = f"offline-{unique}"
    # Without -E: worker events (online, heartbeat, offline) flow anyway.
    env = {"TEST_BROKER_URL": url, "TEST_EVENTS": "0", "TEST_SENT_EVENT": "0"}
    worker = start_worker(env, queues=queue, pool="threads", concurrency=1)
    exporter = run_exporter(url, *SLOW, "-Q", queue)
    exporter.wait_value("celery_worker_up", lambda v: v == 1, hostname=worker.name)
    exporter.wait_value("celery_queue_workers", lambda v: v == 1, queue_name=queue)
    exporter.wait_value("celery_exporter_source_up", lambda v: v == 1, source="events")
    polls = exporter.value("celery_exporter_polls_total")

    sigterm(worker)
    assert_down_within_seconds(exporter, worker.name, queue)
    assert exporter.value("celery_workers") == 0  # (a private Redis: no one else's workers)
    assert exporter.value("celery_queue_consumers", queue_name=queue) == 0  # Redis: workers
    assert exporter.value("celery_exporter_polls_total") == polls  # no poll explains it

    again = start_worker(env, queues=queue, pool="threads", concurrency=1, name=worker.name)
    # worker-online brings it back without waiting for the next poll.
    exporter.wait_value(
        "celery_worker_up", lambda v: v == 1, timeout=FEW_SECONDS, hostname=again.name
    )
    exporter.wait_value(
        "celery_queue_workers", lambda v: v == 1, timeout=FEW_SECONDS, queue_name=queue
    )
    assert exporter.value("celery_workers") == 1


def test_sigterm_worker_is_down_at_once_amqp(
    rabbitmq_url: str, run_exporter: RunExporter, start_worker: StartWorker, amqp_queue: str
) -> None:
    env = {"TEST_BROKER_URL": rabbitmq_url, "TEST_EVENTS": "0", "TEST_SENT_EVENT": "0"}
    worker = start_worker(env, queues=amqp_queue, pool="threads", concurrency=1)
    exporter = run_exporter(rabbitmq_url, *SLOW, "-Q", amqp_queue)
    exporter.wait_value("celery_worker_up", lambda v: v == 1, hostname=worker.name)
    exporter.wait_value("celery_queue_workers", lambda v: v == 1, queue_name=amqp_queue)
    exporter.wait_value("celery_exporter_source_up", lambda v: v == 1, source="events")

    sigterm(worker)
    assert_down_within_seconds(exporter, worker.name, amqp_queue)


def test_forged_heartbeat_messages_stay_within_the_cap(
    redis_server: RedisServer, run_exporter: RunExporter, start_worker: StartWorker, unique: str
) -> None:
    url = fresh_db(redis_server, 13)
    queue = f"forged-{unique}"
    env = {"TEST_BROKER_URL": url, "TEST_EVENTS": "0", "TEST_SENT_EVENT": "0"}
    worker = start_worker(env, queues=queue, pool="threads", concurrency=1)
    exporter = run_exporter(url, "--max-workers", "20")
    exporter.wait_value("celery_worker_up", lambda v: v == 1, hostname=worker.name)
    exporter.wait_value("celery_exporter_source_up", lambda v: v == 1, source="events")

    app = celery_app(env)
    forged = [f"forged-{i}@{unique}" for i in range(200)]
    with app.connection_for_write() as conn:
        for host in forged:
            dispatcher = app.events.Dispatcher(conn, hostname=host)
            dispatcher.send("worker-heartbeat", processed=0, active=0)
            dispatcher.close()
    app.close()

    # 19 slots were free; the other 181 are refused, the real (inspected) worker stays.
    exporter.wait_value(
        "celery_exporter_workers_dropped_total", lambda v: v is not None and v >= 181
    )

    def series() -> int:
        return len([k for k in exporter.metrics() if k[0] == "celery_worker_up"])

    wait_for(lambda: series() == 20, 10, what="the next poll showing the tracked hosts")
    exporter.wait_value("celery_exporter_polls_total", lambda v: v is not None and v >= 3)
    samples = exporter.metrics()
    assert len([k for k in samples if k[0] == "celery_worker_up"]) == 20
    assert samples[("celery_exporter_workers_dropped_total", ())] == 181
    assert samples[("celery_worker_up", (("hostname", worker.name),))] == 1
    assert exporter.log().count("--max-workers 20 hosts are tracked already") == 1
