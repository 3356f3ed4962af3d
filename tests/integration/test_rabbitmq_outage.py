"""A RabbitMQ outage, end to end: a private RabbitMQ node (never the shared one on 5672) is
stopped and started under a real exporter and a real worker. The exporter keeps serving
/metrics throughout, says the broker is down (celery_exporter_up 0, one log line), recovers by
itself, and the task counts are exact afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.support import rabbitnode
from tests.support.common import wait_for
from tests.support.exporter_process import ExporterProcess, parse_metrics
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker, celery_app

pytestmark = pytest.mark.integration

RunExporter = Callable[..., ExporterProcess]


@pytest.fixture
def rabbit() -> Iterator[rabbitnode.RabbitNode]:
    if not rabbitnode.available():
        pytest.skip("rabbitmq-server is not installed")
    node = rabbitnode.RabbitNode()
    try:
        node.start()
        yield node
    finally:
        node.cleanup()


def _succeeded(exporter: ExporterProcess, queue: str) -> float:
    total = 0.0
    for (name, labels), value in exporter.metrics().items():
        if name == "celery_task_succeeded_total" and dict(labels).get("queue_name") == queue:
            total += value
    return total


def _lines(log: str, text: str) -> int:
    return sum(1 for line in log.splitlines() if text in line)


def test_rabbitmq_outage_exporter_stays_up_says_so_recovers_and_counts_exactly(
    rabbit: rabbitnode.RabbitNode,
    private_redis: RedisServer,
    run_exporter: RunExporter,
    start_worker: Callable[..., Worker],
    unique: str,
) -> None:
    queue = f"rmq-outage-{unique}"
    backend = f"{private_redis.url}/0"
    env = {"TEST_BROKER_URL": rabbit.url, "TEST_BACKEND_URL": backend}
    worker = start_worker(env, queues=queue, pool="threads", concurrency=2)
    exporter = run_exporter(rabbit.url, "--result-backend", backend, "-Q", queue)
    exporter.wait_value("celery_worker_up", lambda v: v == 1, 60, hostname=worker.name)

    app = celery_app(env)
    for i in range(5):
        app.send_task("tests.add", args=(i, i), queue=queue)
    app.close()
    wait_for(lambda: _succeeded(exporter, queue) == 5, 60, what="5 tasks counted")

    rabbit.stop()
    exporter.wait_value("celery_exporter_up", lambda v: v == 0, 30)
    errors = exporter.value("celery_exporter_poll_errors_total") or 0
    # Down for several polls: every scrape still answers, with the last good values.
    deadline = time.monotonic() + 60
    while (exporter.value("celery_exporter_poll_errors_total") or 0) < errors + 3:
        assert time.monotonic() < deadline, "polls stopped while the broker was down"
        status, _ctype, body = exporter.get("/metrics")
        assert status == 200
        samples = parse_metrics(body)
        assert samples[("celery_exporter_up", ())] == 0
        assert exporter.get("/-/healthy")[0] == 200
        time.sleep(0.2)  # scrape pacing, like Prometheus; not a wait for a result
    assert _succeeded(exporter, queue) == 5  # kept through the outage
    assert _lines(exporter.log(), "broker unreachable") == 1, exporter.log()[-3000:]

    rabbit.start()
    exporter.wait_value("celery_exporter_up", lambda v: v == 1, 90)
    exporter.wait_value("celery_worker_up", lambda v: v == 1, 120, hostname=worker.name)
    app = celery_app(env)
    for i in range(5):
        app.send_task("tests.add", args=(i, 10), queue=queue)
    app.close()
    wait_for(lambda: _succeeded(exporter, queue) == 10, 120, what="10 tasks counted")
    # Exact, not merely at least: a few more polls and a reconcile later it is still 10.
    polls = exporter.value("celery_exporter_polls_total") or 0
    exporter.wait_value("celery_exporter_polls_total", lambda v: (v or 0) >= polls + 3, 30)
    assert _succeeded(exporter, queue) == 10
    log = exporter.log()
    assert _lines(log, "broker unreachable") == 1
    assert _lines(log, "broker reachable again") == 1
