"""Fix-it's "run this beat entry now", end to end: a real `celery beat` with RedBeat writes its
schedule and is stopped, so the entry falls overdue; the plan names the entry's task, queue
and priority (its args only with --show-task-args); approved, the task runs once on a real
worker and the ledger (fed by the real result pub/sub) sees it succeed; approving the same
plan again does nothing, and a new proposal does not send it a second time."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from exporter.api import build_router, install_error_handlers
from exporter.beat.redbeat import RedBeatReader
from exporter.beat.redbeat_client import redis_client
from exporter.beat.source import BeatSource
from exporter.celery_io import CeleryIO
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.state import State
from exporter.taskdata import SUCCESS
from tests.support.api import results_source
from tests.support.beat_process import Beat
from tests.support.common import wait_for
from tests.support.exporter_process import fresh_db
from tests.support.redisserver import RedisServer
from tests.support.workers import celery_app

pytest.importorskip("redbeat")
pytestmark = pytest.mark.integration
PREFIX = "rbnow:"
OPERATOR = {"Authorization": "Bearer operator-token-run-now"}


def _results(client: redis.Redis) -> dict[str, Any]:
    """Every stored result of tests.add by task id (the worker stores each run)."""
    out = {}
    for key in client.scan_iter("celery-task-meta-*"):
        meta = json.loads(client.get(key) or b"{}")
        if meta.get("name") == "tests.add":
            out[meta["task_id"]] = meta
    return out


def test_run_now_through_fix_it(private_redis: RedisServer, start_worker: Any, unique: str) -> None:
    url = fresh_db(private_redis, 0)
    queue = f"beatq-{unique}"
    env = {
        "TEST_BROKER_URL": url,
        "TEST_BACKEND_URL": url,
        "TEST_REDBEAT_URL": url,
        "TEST_REDBEAT_PREFIX": PREFIX,
        "TEST_BEAT_EVERY": "2",
        "TEST_BEAT_QUEUE": queue,
    }
    start_worker(env, queues=queue)
    backend = redis.Redis.from_url(url)
    clock = FakeClock(time.time())
    config = Config(
        broker_url=url,
        result_backend=url,
        operator_tokens=("operator-token-run-now",),
        plan_ttl=300.0,
        beat_grace=2.0,
    )
    state = State(config, clock=clock)
    source = BeatSource(state, RedBeatReader(lambda: redis_client(url), PREFIX))
    app = FastAPI()
    app.include_router(build_router(state, CeleryIO(config)))
    install_error_handlers(app)
    api = TestClient(app)

    beat = Beat(env)
    try:
        # beat ran tick at least once (on our queue, by its options), then stops
        wait_for(lambda: len(_results(backend)) >= 1, 30, what="beat's first tick")
        beat.stop()
        assert "Releasing lock" in beat.output()
    finally:
        beat.stop()
        os.unlink(beat.log.name)
    # what beat sent is done once a marker sent after it is (one FIFO queue, instant tasks)
    producer = celery_app(env)
    first = producer.send_task("tests.add", args=(0, 0), queue=queue)
    wait_for(lambda: first.id in _results(backend), 30, what="the first marker task")
    ran_by_beat = _results(backend)

    # a minute later by the exporter's clock: tick is overdue and beat is down
    clock.advance(60.0)
    source.run()
    with results_source(state):
        auto = api.post("/api/fix-it", json={}, headers=OPERATOR).json()
        assert not [a for a in auto["actions"] if a["action"] == "run_entry"]
        why = {s["task_id"]: s["reason"] for s in auto["not_actionable"]}
        assert "beat is down" in why["redbeat/tick"]

        proposed = api.post("/api/fix-it", json={"run_entries": ["tick"]}, headers=OPERATOR)
        assert proposed.status_code == 201, proposed.text
        plan = proposed.json()
        assert plan["status"] == "pending"
        [action] = plan["actions"]
        assert action["action"] == "run_entry"
        assert action["task_name"] == "tests.add"
        assert action["queue"] == queue
        assert action["options"] == {"queue": queue, "priority": 3}
        assert action["target"].startswith("redbeat/tick@")
        assert action["args"] is None and action["kwargs"] is None  # no --show-task-args
        assert "'tick'" in action["description"] and repr(queue) in action["description"]
        assert _results(backend) == ran_by_beat  # proposing sent nothing

        body = {"plan_id": plan["id"], "digest": plan["digest"]}
        done = api.post("/api/approve", json=body, headers=OPERATOR)
        assert done.status_code == 200, done.text
        [outcome] = done.json()["outcomes"]
        assert outcome["outcome"] == "ok", outcome
        new_id = outcome["new_task_id"]

        # it ran once, on the worker, with the entry's arguments, and the ledger saw it
        wait_for(lambda: new_id in _results(backend), 30, what="the run-now task's result")
        assert _results(backend)[new_id]["result"] == 3
        assert _results(backend)[new_id]["status"] == SUCCESS
        wait_for(
            lambda: (rec := state.ledger.get(new_id)) is not None and rec.state == SUCCESS,
            15,
            what="the ledger sees the run-now task succeed",
        )
        assert set(_results(backend)) == set(ran_by_beat) | {new_id}

        # the same plan approved again: refused, nothing sent
        again = api.post("/api/approve", json=body, headers=OPERATOR)
        assert again.status_code == 409, again.text
        # a new proposal for the same missed run is not actionable: it was sent
        repeat = api.post("/api/fix-it", json={"run_entries": ["tick"]}, headers=OPERATOR)
        assert repeat.json()["actions"] == []
        assert "already sent now by plan" in repeat.json()["not_actionable"][0]["reason"]

        # a marker task through the same queue finishes after anything sent before it
        marker = producer.send_task("tests.add", args=(20, 22), queue=queue)
        wait_for(lambda: marker.id in _results(backend), 30, what="the marker task")
        assert set(_results(backend)) == set(ran_by_beat) | {new_id, marker.id}
        audit = api.get("/api/audit", headers=OPERATOR).json()["entries"]
        events = [e["event"] for e in audit if e["plan_id"] == plan["id"]]
        assert events.count("approved") == 1 and events.count("executed") == 1
        assert "refused" in events
