"""Fix-it end to end with real Celery workers on a private Redis, the ledger fed by its real
result-backend pub/sub source: transient failures are proposed, approved and replayed (and the
ledger counts the successes); a stuck task is revoked through a greedy plan; denial changes
nothing; replay and expiry are refused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from exporter.api import build_router, install_error_handlers
from exporter.celery_io import CeleryIO
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.snapshot import PollHealth, RunningTask, Snapshot, WorkerSnapshot
from exporter.state import State
from tests.support.api import HEAD_O, TRANSIENT, results_source
from tests.support.common import wait_for
from tests.support.workers import celery_app

pytestmark = pytest.mark.integration


def _status(client: redis.Redis, task_id: str) -> str | None:
    raw = client.get(f"celery-task-meta-{task_id}")
    return json.loads(raw)["status"] if raw else None


def _ledger_state(state: State, task_id: str) -> str | None:
    rec = state.ledger.get(task_id)
    return rec.state if rec else None


def _snapshot_from_inspect(producer: Any, now: float, queue: str) -> Snapshot:
    """What the poller would build from inspect active(): the stuck-task input of greedy mode."""
    active = producer.control.inspect(timeout=2.0).active() or {}
    workers = {}
    for host, tasks in active.items():
        running = tuple(
            RunningTask(t["id"], t["name"], host, queue, t.get("time_start")) for t in tasks
        )
        workers[host] = WorkerSnapshot(
            host, True, now, active=len(running), queues=(queue,), running=running
        )
    return Snapshot(taken_at=now, workers=workers, health=PollHealth(broker_up=True))


def test_fix_it_with_real_workers(
    redis_server: Any, start_worker: Any, unique: str, tmp_path: Path
) -> None:
    url = f"{redis_server.url}/10"
    queue = f"fixit-{unique}"
    env = {"TEST_BROKER_URL": url, "TEST_BACKEND_URL": url, "TEST_DEFAULT_QUEUE": queue}
    start_worker(env, queues=queue, concurrency=2)
    producer = celery_app(env)
    backend = redis.Redis.from_url(url)
    marker = tmp_path / "healed"

    clock = FakeClock(time.time())
    config = Config(
        broker_url=url,
        result_backend=url,
        operator_tokens=("operator-token-456",),
        transient_exceptions=TRANSIENT,
        stuck_after=5.0,
        plan_ttl=120.0,
    )
    state = State(config, clock=clock)
    io = CeleryIO(config)
    app = FastAPI()
    app.include_router(build_router(state, io))
    install_error_handlers(app)
    api = TestClient(app)
    with results_source(state):
        try:
            _scenario(state, api, io, producer, backend, marker, queue, clock)
        finally:
            io.close()
            producer.close()


def _scenario(
    state: State,
    api: TestClient,
    io: CeleryIO,
    producer: Any,
    backend: redis.Redis,
    marker: Path,
    queue: str,
    clock: FakeClock,
) -> None:
    transient = [
        producer.send_task("tests.fail_transient", args=[str(marker)], queue=queue).id
        for _ in range(3)
    ]
    permanent = producer.send_task("tests.fail_permanent", queue=queue).id
    # The ledger hears them from the result backend's pub/sub, as in the daemon.
    wait_for(
        lambda: all(_ledger_state(state, t) == "FAILURE" for t in [*transient, permanent]),
        60,
        what="failures in the ledger",
    )

    # Conservative: exactly the three transient failures; the permanent one is not retried.
    plan = api.post("/api/fix-it", json={"mode": "conservative"}, headers=HEAD_O).json()
    assert sorted(a["target"] for a in plan["actions"]) == sorted(transient)
    assert permanent in {s["task_id"] for s in plan["not_actionable"]}
    marker.write_text("ok")  # the "network" is back: replays can succeed
    done = api.post(
        "/api/approve", json={"plan_id": plan["id"], "digest": plan["digest"]}, headers=HEAD_O
    ).json()
    assert [o["outcome"] for o in done["outcomes"]] == ["ok"] * 3
    new_ids = [o["new_task_id"] for o in done["outcomes"]]

    wait_for(
        lambda: all(_ledger_state(state, t) == "SUCCESS" for t in new_ids),
        60,
        what="retried tasks succeed, in the ledger",
    )
    for original, new in zip([o["target"] for o in done["outcomes"]], new_ids, strict=True):
        assert state.ledger.get(new).parent_id == original  # type: ignore[union-attr]
    counts = state.ledger.counts().tasks
    assert counts[("tests.fail_transient", queue, "succeeded")] == 3
    assert counts[("tests.fail_transient", queue, "failed")] == 3
    # Replaying the approval is refused and sends nothing.
    replay = api.post(
        "/api/approve", json={"plan_id": plan["id"], "digest": plan["digest"]}, headers=HEAD_O
    )
    assert replay.status_code == 409

    # Denial: a plan to retry the permanent failure, denied, runs nothing.
    keys_before = len(list(backend.scan_iter("celery-task-meta-*")))
    plan2 = api.post("/api/fix-it", json={"task_ids": [permanent]}, headers=HEAD_O).json()
    assert [a["target"] for a in plan2["actions"]] == [permanent]
    denied = api.post(
        "/api/approve",
        headers=HEAD_O,
        json={"plan_id": plan2["id"], "digest": plan2["digest"], "decision": "deny"},
    )
    assert denied.json()["status"] == "denied"
    assert (
        api.post(
            "/api/approve",
            headers=HEAD_O,
            json={"plan_id": plan2["id"], "digest": plan2["digest"]},
        ).status_code
        == 409
    )

    # Stuck: a long task, seen running by inspect, older than --stuck-after by the clock.
    sleeper = producer.send_task("tests.sleep", args=[120], queue=queue).id
    wait_for(lambda: _status(backend, sleeper) == "STARTED", 30, what="sleeper started")
    state.set_snapshot(
        wait_for(
            lambda: (s := _snapshot_from_inspect(producer, clock.time(), queue)).workers and s,
            30,
            what="inspect active",
        )
    )
    clock.advance(60)
    plan3 = api.post("/api/fix-it", json={"mode": "greedy"}, headers=HEAD_O).json()
    # PermanentError reads as a bug (planner.BUG_LIKE_WORDS): even greedy leaves it out and
    # says why; the stuck sleeper is revoked.
    kinds = {(a["action"], a["target"]) for a in plan3["actions"]}
    assert kinds == {("revoke", sleeper)}
    assert permanent in {s["task_id"] for s in plan3["not_actionable"]}
    ran = api.post(
        "/api/approve", json={"plan_id": plan3["id"], "digest": plan3["digest"]}, headers=HEAD_O
    ).json()
    assert [o["outcome"] for o in ran["outcomes"]] == ["ok"], ran
    wait_for(lambda: _status(backend, sleeper) == "REVOKED", 30, what="sleeper revoked")

    # Expiry: a plan older than --plan-ttl by the clock is refused.
    plan4 = api.post("/api/fix-it", json={"task_ids": [permanent]}, headers=HEAD_O).json()
    clock.advance(121)
    late = api.post(
        "/api/approve", json={"plan_id": plan4["id"], "digest": plan4["digest"]}, headers=HEAD_O
    )
    assert late.status_code == 410
    # Only the greedy plan's two tasks added records: the denied and expired plans ran none.
    wait_for(
        lambda: len(list(backend.scan_iter("celery-task-meta-*"))) == keys_before + 2,
        30,
        what="only the sleeper and the greedy retry stored",
    )
    events = [e["event"] for e in api.get("/api/audit", headers=HEAD_O).json()["entries"]]
    assert events.count("executed") == 2 and "denied" in events and "refused" in events
