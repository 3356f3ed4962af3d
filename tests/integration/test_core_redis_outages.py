"""Core daemon on Redis when things go away: a worker SIGKILLed, the broker stopped and
restarted, the broker down at start. The daemon runs as a subprocess; the broker-outage
tests use a private Redis of their own.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.common import wait_for
from tests.support.exporter_process import ExporterProcess, fresh_db
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker

pytestmark = pytest.mark.integration

RunExporter = Callable[..., ExporterProcess]
StartWorker = Callable[..., Worker]


def test_worker_killed_goes_down_then_purged(
    redis_server: RedisServer,
    run_exporter: RunExporter,
    start_worker: StartWorker,
    unique: str,
) -> None:
    url = fresh_db(redis_server, 6)
    queue = f"kill-{unique}"
    exporter = run_exporter(url, "--worker-timeout", "2", "--purge-offline-worker-metrics", "5")
    env = {"TEST_BROKER_URL": url, "TEST_EVENTS": "0", "TEST_SENT_EVENT": "0"}
    worker = start_worker(env, queues=queue, pool="threads", concurrency=1)
    host = worker.name
    exporter.wait_value("celery_worker_up", lambda v: v == 1, hostname=host)
    exporter.wait_value("celery_queue_workers", lambda v: v == 1, queue_name=queue)
    assert exporter.value("celery_workers") == 1

    worker.kill()  # SIGKILL: no worker-offline event, no goodbye
    exporter.wait_value("celery_worker_up", lambda v: v == 0, hostname=host)
    samples = exporter.metrics()
    assert samples[("celery_workers", ())] == 0
    assert samples[("celery_queue_workers", (("queue_name", queue),))] == 0
    # After the purge time the worker's series go; the queue's aggregate stays, at 0, so an
    # alert on it keeps firing.
    exporter.wait_value("celery_worker_up", lambda v: v is None, hostname=host)
    samples = exporter.metrics()
    assert not [k for k in samples if dict(k[1]).get("hostname") == host]
    assert samples[("celery_queue_workers", (("queue_name", queue),))] == 0
    assert samples[("celery_workers", ())] == 0
    # ... and it still does a few polls later.
    polls = samples[("celery_exporter_polls_total", ())]
    exporter.wait_value("celery_exporter_polls_total", lambda v: v is not None and v >= polls + 2)
    assert exporter.value("celery_queue_workers", queue_name=queue) == 0


def _count(log: str, text: str) -> int:
    return sum(1 for line in log.splitlines() if text in line)


def test_broker_outage_and_recovery(
    private_redis: RedisServer,
    run_exporter: RunExporter,
    unique: str,
) -> None:
    url = f"{private_redis.url}/0"
    queue = f"out-{unique}"
    exporter = run_exporter(url, "-Q", queue)
    exporter.wait_value("celery_exporter_up", lambda v: v == 1)
    errors0 = exporter.value("celery_exporter_poll_errors_total") or 0

    private_redis.stop()
    exporter.wait_value("celery_exporter_up", lambda v: v == 0)
    age1 = exporter.value("celery_exporter_snapshot_age_seconds")
    assert age1 is not None
    # Several failed polls: still serving, the age grows, and one log line for the outage.
    exporter.wait_value(
        "celery_exporter_poll_errors_total", lambda v: v is not None and v >= errors0 + 3
    )
    # The body is rendered once per render interval (1 s), in phase with the 1 s polls: the
    # body that first shows the third error may be only one interval (seen: 0.9997 s) younger
    # than the one read above. Growing is what matters: wait for more than that.
    age2 = exporter.wait_value(
        "celery_exporter_snapshot_age_seconds", lambda v: v is not None and v > age1 + 1
    )
    assert age2 is not None
    assert exporter.value("celery_queue_length", queue_name=queue) == 0  # last good value kept
    assert _count(exporter.log(), "broker unreachable") == 1, exporter.log()

    private_redis.start()  # same port: the daemon reconnects by itself
    exporter.wait_value("celery_exporter_up", lambda v: v == 1, timeout=25)
    # The event receiver shares the Celery app: it must reconnect too, not stay down.
    exporter.wait_value("celery_exporter_source_up", lambda v: v == 1, source="events")
    age3 = exporter.value("celery_exporter_snapshot_age_seconds")
    assert age3 is not None and age3 < age2
    log = exporter.log()
    assert _count(log, "broker unreachable") == 1, log
    assert _count(log, "broker reachable again") == 1, log
    assert exporter.get("/-/ready")[0] == 200


def test_broker_down_at_start(
    private_redis: RedisServer,
    run_exporter: RunExporter,
    unique: str,
) -> None:
    private_redis.stop()
    queue = f"down-{unique}"
    exporter = run_exporter(f"{private_redis.url}/0", "-Q", queue)
    # Ready (a poll finished and says "down"), serving, and no snapshot age: nothing was read.
    wait_for(lambda: exporter.get("/-/ready")[0] == 200, 20, what="ready after a failed poll")
    samples = exporter.metrics()
    assert samples[("celery_exporter_up", ())] == 0
    assert ("celery_exporter_snapshot_age_seconds", ()) not in samples
    exporter.wait_value("celery_exporter_poll_errors_total", lambda v: v is not None and v >= 2)
    assert _count(exporter.log(), "broker unreachable") == 1, exporter.log()

    private_redis.start()
    exporter.wait_value("celery_exporter_up", lambda v: v == 1, timeout=25)
    assert exporter.value("celery_queue_length", queue_name=queue) == 0
