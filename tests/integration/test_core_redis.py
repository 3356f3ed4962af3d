"""Core daemon against a real Redis broker and real Celery workers: queue depth over priority
sub-queues, prefetched and ETA tasks, the oldest message's age.

Each test uses its own DB of the session's private Redis, drives `python -m exporter` as a
subprocess and reads /metrics as Prometheus would (one test drives the Poller in-process).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from prometheus_client import generate_latest

from exporter.celery_io import CeleryIO, CeleryReader
from exporter.collectors import build_registry
from exporter.config import Config
from exporter.poller import Poller
from exporter.state import State
from exporter.taskdata import SENT, SOURCE_EVENTS, TaskUpdate
from tests.support.common import wait_for
from tests.support.exporter_process import ExporterProcess, fresh_db, parse_metrics
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker, celery_app

pytestmark = pytest.mark.integration

RunExporter = Callable[..., ExporterProcess]
StartWorker = Callable[..., Worker]


def producer(url: str, prefix: str = "", **transport: Any) -> Any:
    app = celery_app({"TEST_BROKER_URL": url, "TEST_KEYPREFIX": prefix, "TEST_SENT_EVENT": "0"})
    if transport:
        app.conf.broker_transport_options = {**app.conf.broker_transport_options, **transport}
    return app


@pytest.mark.parametrize("case", ["default-steps", "custom-sep-steps", "keyprefix"])
def test_queue_length_sums_priority_sub_queues(
    case: str,
    redis_server: RedisServer,
    run_exporter: RunExporter,
    unique: str,
) -> None:
    db = {"default-steps": 1, "custom-sep-steps": 2, "keyprefix": 3}[case]
    url = fresh_db(redis_server, db)
    queue = f"prio-{unique}"
    prefix = ""
    transport: dict[str, Any] = {}
    flags: tuple[str, ...] = ()
    if case == "custom-sep-steps":
        # Steps the exporter cannot guess: without the flags it would count the base list only.
        transport = {"sep": ":", "priority_steps": [0, 5]}
        opt = "--broker-transport-option"
        flags = (opt, "sep=:", opt, "priority_steps=[0,5]")
    elif case == "keyprefix":
        prefix = f"pfx{unique}:"
        flags = ("--broker-transport-option", f"global_keyprefix={prefix}")
    app = producer(url, prefix, **transport)
    priorities = [0, 0, 2, 3, 5, 6, 7, 9, 9]
    for pri in priorities:
        app.send_task("tests.add", args=(1, 2), queue=queue, priority=pri)
    app.close()

    # The messages really are spread over several lists (else the test proves nothing).
    raw = redis.Redis(port=redis_server.port, db=db)
    lists = {k: raw.llen(k) for k in raw.scan_iter(match=f"{prefix}{queue}*", count=100)}
    raw.close()
    assert sum(lists.values()) == len(priorities)
    assert len([n for n in lists.values() if n]) >= 2, lists

    exporter = run_exporter(url, "-Q", queue, *flags)
    exporter.wait_value("celery_queue_length", lambda v: v is not None, queue_name=queue)
    samples = exporter.metrics()
    assert samples[("celery_queue_length", (("queue_name", queue),))] == len(priorities)
    assert samples[("celery_queue_workers", (("queue_name", queue),))] == 0
    assert samples[("celery_exporter_up", ())] == 1
    assert samples[("celery_broker_unacked_messages", ())] == 0


def test_reserved_and_eta_tasks_are_not_queue_length(
    redis_server: RedisServer,
    run_exporter: RunExporter,
    start_worker: StartWorker,
    unique: str,
) -> None:
    url = fresh_db(redis_server, 4)
    queue = f"busy-{unique}"
    env = {"TEST_BROKER_URL": url, "TEST_PREFETCH": "4", "TEST_EVENTS": "0", "TEST_SENT_EVENT": "0"}
    exporter = run_exporter(url)
    # One thread, so a long task blocks it; the threads pool still answers inspect while busy.
    worker = start_worker(env, queues=queue, pool="threads", concurrency=1)
    host = worker.name
    exporter.wait_value("celery_worker_up", lambda v: v == 1, hostname=host)

    app = producer(url)
    app.send_task("tests.sleep", args=(60,), queue=queue)
    exporter.wait_value("celery_worker_tasks_active", lambda v: v == 1, hostname=host)
    for _ in range(2):
        app.send_task("tests.add", args=(1, 1), queue=queue, countdown=900)
    for _ in range(6):
        app.send_task("tests.add", args=(2, 2), queue=queue)
    app.close()
    sent = 1 + 2 + 6

    def settled() -> dict[str, float] | None:
        s = exporter.metrics()
        got = {
            "active": s.get(("celery_worker_tasks_active", (("hostname", host),))),
            "reserved": s.get(("celery_worker_tasks_reserved", (("hostname", host),))),
            "scheduled": s.get(("celery_worker_tasks_scheduled", (("hostname", host),))),
            "length": s.get(("celery_queue_length", (("queue_name", queue),))),
            "unacked": s.get(("celery_broker_unacked_messages", ())),
            "total_reserved": s.get(("celery_tasks_reserved", ())),
            "total_scheduled": s.get(("celery_tasks_scheduled", ())),
        }
        if any(v is None for v in got.values()):
            return None
        values = {k: float(v) for k, v in got.items() if v is not None}
        # Settled: the worker holds its two ETA tasks and as many prefetched as it will take.
        if values["scheduled"] != 2 or values["reserved"] < 1:
            return None
        if values["active"] + values["reserved"] + values["scheduled"] + values["length"] != sent:
            return None
        return values

    values = wait_for(settled, 25, interval=0.3, what="worker holding ETA and prefetched tasks")
    # Countdown tasks are on the worker, never in the queue: the queue holds only what the
    # single busy thread could not prefetch.
    assert values["active"] == 1
    assert values["length"] == 6 - values["reserved"] > 0
    # Taken but not acknowledged: prefetched + ETA (the running one was acked on start).
    assert values["unacked"] == values["reserved"] + values["scheduled"]
    assert values["total_reserved"] == values["reserved"]
    assert values["total_scheduled"] == 2
    worker.kill()  # a warm shutdown would wait for the 60 s task


@pytest.mark.parametrize("prefix", ["", "pfx:"], ids=["plain", "keyprefix"])
def test_oldest_message_age_grows_from_first_seen(
    prefix: str,
    redis_server: RedisServer,
    run_exporter: RunExporter,
    unique: str,
) -> None:
    url = fresh_db(redis_server, 5)
    queue = f"age-{unique}"
    flags = ("--broker-transport-option", f"global_keyprefix={prefix}") if prefix else ()
    exporter = run_exporter(url, "-Q", queue, *flags)
    exporter.wait_value(
        "celery_queue_oldest_message_age_seconds", lambda v: v == 0, queue_name=queue
    )
    app = producer(url, prefix)
    app.send_task("tests.add", args=(1, 2), queue=queue)
    app.send_task("tests.add", args=(1, 2), queue=queue, priority=9)
    app.close()
    first = exporter.wait_value(
        "celery_queue_oldest_message_age_seconds",
        lambda v: v is not None and v > 0,
        queue_name=queue,
    )
    assert first is not None
    later = exporter.wait_value(
        "celery_queue_oldest_message_age_seconds",
        lambda v: v is not None and v >= first + 1.5,
        queue_name=queue,
    )
    # A lower bound counted from the first poll that saw it: never more than we waited.
    assert later is not None and later < 20
    assert exporter.value("celery_queue_length", queue_name=queue) == 2


def test_oldest_message_age_from_a_task_sent_event(
    redis_server: RedisServer,
    run_exporter: RunExporter,
    unique: str,
) -> None:
    """End to end through the event receiver: a task-sent event dated 5 minutes ago makes
    the waiting message 5 minutes old at once (first-seen would start from 0)."""
    url = fresh_db(redis_server, 11)
    queue = f"sentev-{unique}"
    exporter = run_exporter(url, "-Q", queue)
    exporter.wait_value("celery_exporter_source_up", lambda v: v == 1, source="events")
    app = producer(url)
    task_id = f"sentev-{unique}"
    app.send_task("tests.add", args=(1, 2), queue=queue, task_id=task_id)
    sent_at = time.time() - 300
    # What a producer with task_send_sent_event publishes, back-dated (the dispatcher keeps
    # a timestamp it is given).
    with app.events.default_dispatcher() as dispatcher:
        dispatcher.send("task-sent", uuid=task_id, name="tests.add", queue=queue, timestamp=sent_at)
    app.close()
    age = exporter.wait_value(
        "celery_queue_oldest_message_age_seconds",
        lambda v: v is not None and v >= 300,
        queue_name=queue,
    )
    assert age is not None and age < 330


def test_oldest_message_age_from_sent_event(redis_server: RedisServer, unique: str) -> None:
    """In-process: the real Poller and CeleryReader; the ledger knows one task's sent time
    (as the event source records it from task-sent), so that message's age is exact."""
    url = fresh_db(redis_server, 8)
    queue = f"sent-{unique}"
    config = Config(broker_url=url, queues=(queue,), inspect_timeout=0.3, poll_interval=1)
    state = State(config.validate())
    io = CeleryIO(config)
    poller = Poller(state, CeleryReader(io))
    try:
        app = producer(url)
        old_id, new_id = f"old-{unique}", f"new-{unique}"
        # In different priority sub-queues: the oldest head of any of them counts.
        app.send_task("tests.add", args=(1, 2), queue=queue, task_id=old_id, priority=9)
        app.send_task("tests.add", args=(1, 2), queue=queue, task_id=new_id)
        app.close()
        sent_at = time.time() - 120
        state.ledger.apply(
            TaskUpdate(old_id, SENT, SOURCE_EVENTS, timestamp=sent_at, name="tests.add")
        )
        snap = poller.poll()
        got = snap.queues[queue]
        assert got.length == 2
        assert got.oldest_age_source == "sent_event"
        assert got.oldest_age is not None and 120 <= got.oldest_age < 135
        samples = parse_metrics(generate_latest(build_registry(state)).decode())
        age = samples[("celery_queue_oldest_message_age_seconds", (("queue_name", queue),))]
        assert 120 <= age < 135

        # Once that message is consumed, the other head has no sent time: first-seen applies.
        raw = redis.Redis(port=redis_server.port, db=8)
        for key in raw.scan_iter(match=f"{queue}*", count=100):
            if raw.lindex(key, -1) and old_id.encode() in (raw.lindex(key, -1) or b""):
                raw.rpop(key)
        raw.close()
        got = poller.poll().queues[queue]
        assert got.length == 1
        assert got.oldest_age_source == "first_seen"
        assert got.oldest_age is not None and got.oldest_age < 10
    finally:
        io.close()
