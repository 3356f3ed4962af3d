"""Core daemon against the shared RabbitMQ with a real Celery worker, end to end.

Queue length and consumers come from a passive declare; a configured queue nobody declared
reports 0 and must not break the poll. Every queue name is unique and deleted afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kombu import Connection

from tests.support.common import wait_for
from tests.support.exporter_process import ExporterProcess
from tests.support.workers import Worker, celery_app

pytestmark = pytest.mark.integration

RunExporter = Callable[..., ExporterProcess]


@pytest.fixture
def queues(rabbitmq_url: str, unique: str) -> Iterator[dict[str, str]]:
    names = {
        "consumed": f"ce-consumed-{unique}",
        "waiting": f"ce-waiting-{unique}",
        "missing": f"ce-missing-{unique}",
    }
    yield names
    with Connection(rabbitmq_url) as conn:
        for name in names.values():
            channel = conn.channel()
            try:
                channel.queue_delete(name)
            except conn.channel_errors:
                pass  # never declared (the "missing" one): nothing to clean
            finally:
                try:
                    channel.close()
                except conn.connection_errors + conn.channel_errors:
                    pass  # the broker closed the channel after the 404


def test_queue_length_and_consumers_via_passive_declare(
    rabbitmq_url: str,
    run_exporter: RunExporter,
    start_worker: Callable[..., Worker],
    queues: dict[str, str],
) -> None:
    env = {
        "TEST_BROKER_URL": rabbitmq_url,
        "TEST_EVENTS": "0",
        "TEST_SENT_EVENT": "0",
        "TEST_PREFETCH": "4",
    }
    worker = start_worker(env, queues=queues["consumed"], pool="threads", concurrency=1)
    app = celery_app(env)
    for _ in range(5):
        app.send_task("tests.add", args=(1, 2), queue=queues["waiting"])
    app.close()

    exporter = run_exporter(rabbitmq_url, "-Q", f"{queues['waiting']},{queues['missing']}")
    consumed, waiting, missing = queues["consumed"], queues["waiting"], queues["missing"]
    exporter.wait_value("celery_queue_workers", lambda v: v == 1, queue_name=consumed)
    exporter.wait_value("celery_queue_length", lambda v: v == 5, queue_name=waiting)
    samples = exporter.metrics()

    def get(name: str, queue: str) -> float | None:
        return samples.get((name, (("queue_name", queue),)))

    # From the broker: the worker's consumer is attached, nothing waits in its queue.
    assert get("celery_queue_consumers", consumed) == 1
    assert get("celery_queue_length", consumed) == 0
    assert get("celery_queue_consumers", waiting) == 0
    assert get("celery_queue_workers", waiting) == 0
    # A configured queue that does not exist: 0, and the rest of the poll still worked.
    assert get("celery_queue_length", missing) == 0
    assert get("celery_queue_consumers", missing) == 0
    assert samples[("celery_exporter_up", ())] == 1
    assert samples[("celery_worker_up", (("hostname", worker.name),))] == 1
    assert ("celery_broker_unacked_messages", ()) not in samples  # Redis only
    # The 404 closed only a throw-away channel: later polls keep working.
    polls = samples[("celery_exporter_polls_total", ())]
    exporter.wait_value("celery_exporter_polls_total", lambda v: v is not None and v >= polls + 2)
    assert exporter.value("celery_exporter_up") == 1
    assert exporter.value("celery_exporter_poll_errors_total") == 0
    assert exporter.value("celery_queue_length", queue_name=waiting) == 5

    # A busy worker: what it prefetched is reserved on the worker, not ready in the queue
    # (a passive declare counts ready messages only).
    app = celery_app(env)
    app.send_task("tests.sleep", args=(60,), queue=consumed)
    exporter.wait_value("celery_worker_tasks_active", lambda v: v == 1, hostname=worker.name)
    for _ in range(6):
        app.send_task("tests.add", args=(2, 2), queue=consumed)
    app.close()

    def split() -> tuple[float, float] | None:
        s = exporter.metrics()
        reserved = s.get(("celery_worker_tasks_reserved", (("hostname", worker.name),)))
        ready = s.get(("celery_queue_length", (("queue_name", consumed),)))
        if reserved is None or ready is None or reserved + ready != 6 or reserved < 3:
            return None
        return reserved, ready

    # Prefetch 4 on one busy thread: the worker holds 4 (the running one was acked on start).
    reserved, ready = wait_for(split, 20, interval=0.3, what="prefetched vs ready split")
    assert ready == 6 - reserved > 0
    assert exporter.value("celery_queue_consumers", queue_name=consumed) == 1
    worker.kill()  # a warm shutdown would wait for the 60 s task
