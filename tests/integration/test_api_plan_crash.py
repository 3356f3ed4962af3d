"""SIGKILL of the real exporter in the middle of a 200-retry plan, with a real worker on a
private Redis, then a restart: no failure is replayed twice (counted from the result backend,
where each replay names its parent), the plan reads `interrupted` with exactly the retries
that were sent, and proposing again for the same tasks covers exactly the rest."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.support.common import free_port, wait_for
from tests.support.exporter_process import ExporterProcess
from tests.support.workers import celery_app

pytestmark = pytest.mark.integration
OP = "op-crash-token-1"
N = 200  # the planner's MAX_ACTIONS: one full plan


def _exporter(url: str, queue: str, tokens: Path) -> tuple[ExporterProcess, httpx.Client]:
    port = free_port()
    exporter = ExporterProcess(
        url,
        [
            "--api-listen",
            f"127.0.0.1:{port}",
            "-Q",
            queue,
            "--operator-token-file",
            str(tokens),
            "--transient-exceptions",
            "TransientError",
        ],
    ).wait_serving()
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        timeout=60.0,
        headers={"Authorization": f"Bearer {OP}"},
    )
    return exporter, api


def _replays(backend: redis.Redis, originals: set[str]) -> Counter[str]:
    """Replays per failed task, from what the worker stored (result_extended keeps parent_id)."""
    keys = list(backend.scan_iter("celery-task-meta-*", count=1000))
    metas = [json.loads(raw) for raw in backend.mget(keys) if raw]
    return Counter(m["parent_id"] for m in metas if m.get("parent_id") in originals)


def _drained(backend: redis.Redis, producer: Any, queue: str) -> bool:
    """Nothing waiting, prefetched or running: every replay that was sent has finished."""
    if backend.llen(queue) or backend.hlen("unacked"):
        return False
    inspect = producer.control.inspect(timeout=1.0, limit=1)  # one worker: its reply ends it
    busy = [*(inspect.active() or {}).values(), *(inspect.reserved() or {}).values()]
    return not any(busy)


def test_sigkill_during_a_large_plan_then_restart(
    private_redis: Any, start_worker: Any, unique: str, tmp_path: Path
) -> None:
    url = f"{private_redis.url}/0"
    queue = f"crash-{unique}"
    env = {"TEST_BROKER_URL": url, "TEST_BACKEND_URL": url, "TEST_DEFAULT_QUEUE": queue}
    start_worker(env, queues=queue, concurrency=4)
    tokens = tmp_path / "op"
    tokens.write_text(OP + "\n")
    marker = tmp_path / "healed"
    producer = celery_app(env)
    backend = redis.Redis.from_url(url)
    first, api = _exporter(url, queue, tokens)
    second: ExporterProcess | None = None
    try:
        originals = {
            producer.send_task("tests.fail_transient", args=[str(marker)], queue=queue).id
            for _ in range(N)
        }

        def all_failed() -> bool:
            page = api.get("/api/tasks/recent", params={"status": "FAILURE", "limit": 500})
            return {t["id"] for t in page.json()["items"]} >= originals

        wait_for(all_failed, 60, interval=0.3, what="the exporter's ledger has the failures")
        plan = api.post("/api/fix-it", json={"mode": "conservative"}).json()
        assert {a["target"] for a in plan["actions"]} == originals
        marker.write_text("ok")  # replays succeed, so they add no failures of their own

        # Approve (the request runs the plan), and SIGKILL the exporter once some outcomes
        # are recorded: the journal itself says the plan is under way, whatever the speed.
        def approve() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the exporter dies under the request
                api.post("/api/approve", json={"plan_id": plan["id"], "digest": plan["digest"]})

        outcomes_key = f"celery-ops-exporter:plan:{plan['id']}:outcomes"
        threading.Thread(target=approve, daemon=True).start()
        wait_for(lambda: backend.llen(outcomes_key) >= 10, 30, interval=0.001, what="progress")
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        recorded_at_kill = backend.llen(outcomes_key)
        assert recorded_at_kill < N, "the plan finished before the kill: make it bigger"

        second, api2 = _exporter(url, queue, tokens)
        api.close()
        api = api2

        def interrupted() -> dict[str, Any] | None:
            body = dict(api.get(f"/api/plans/{plan['id']}").json())
            return body if body["status"] == "interrupted" else None

        # The dead executor's lease runs out within LEASE_SECONDS (10 s).
        seen = wait_for(interrupted, 30, interval=0.3, what="the plan reads interrupted")
        wait_for(lambda: _drained(backend, producer, queue), 60, interval=0.5, what="drained")

        sent_before = _replays(backend, originals)
        assert max(sent_before.values()) == 1  # nothing replayed twice
        seen = dict(api.get(f"/api/plans/{plan['id']}").json())
        ok = {o["target"] for o in seen["outcomes"] if o["outcome"] == "ok"}
        doubt = {o["target"] for o in seen["outcomes"] if o["outcome"] == "unknown"}
        # What ran is exactly what the plan shows as sent: only a send caught mid-way by the
        # kill, and never seen since (so it did not leave), can remain in doubt.
        assert ok == set(sent_before) and len(ok) >= recorded_at_kill
        assert len(doubt) <= 1 and not doubt & set(sent_before)
        targets = [a["target"] for a in seen["actions"]]
        assert {targets[i] for i in seen["not_run"]} | ok | doubt == originals
        assert seen["outcomes"] and len(seen["not_run"]) == N - len(seen["outcomes"])

        # Proposing again for the same tasks covers exactly the rest; nothing is blocked.
        again = api.post("/api/fix-it", json={"task_ids": sorted(originals)}).json()
        assert {a["target"] for a in again["actions"]} == originals - set(sent_before)
        done = api.post(
            "/api/approve", json={"plan_id": again["id"], "digest": again["digest"]}
        ).json()
        assert done["status"] == "executed"
        assert all(o["outcome"] == "ok" for o in done["outcomes"]), done["outcomes"][:3]
        wait_for(lambda: _drained(backend, producer, queue), 60, interval=0.5, what="drained")
        wait_for(
            lambda: _replays(backend, originals) == Counter(dict.fromkeys(originals, 1)),
            30,
            interval=0.3,
            what="every failure replayed exactly once",
        )
    finally:
        api.close()
        first.stop()
        if second is not None:
            second.stop()
        producer.close()
        backend.close()
