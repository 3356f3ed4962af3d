"""The API in the real daemon (`python -m exporter` with --api-listen), with a real worker: the
poller's snapshot finds a stuck task that a greedy plan revokes, the daemon's own sources put a
transient failure in the ledger that a conservative plan replays, and each listener serves only
its part."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.support.common import free_port, wait_for
from tests.support.exporter_process import ExporterProcess, fresh_db
from tests.support.workers import celery_app

pytestmark = pytest.mark.integration
OP, VIEW = "op-daemon-token-01", "view-daemon-token-01"


def test_daemon_api_stuck_revoke_and_retry(
    redis_server: Any, start_worker: Any, run_exporter: Any, unique: str, tmp_path: Path
) -> None:
    url = fresh_db(redis_server, 12)
    queue = f"daemon-{unique}"
    env = {"TEST_BROKER_URL": url, "TEST_BACKEND_URL": url, "TEST_DEFAULT_QUEUE": queue}
    start_worker(env, queues=queue, concurrency=2)
    (tmp_path / "op").write_text(OP + "\n")
    (tmp_path / "view").write_text(VIEW + "\n")
    api_port = free_port()
    exporter: ExporterProcess = run_exporter(
        url,
        "--api-listen",
        f"127.0.0.1:{api_port}",
        "-Q",
        queue,
        "--stuck-after",
        "2",
        "--operator-token-file",
        str(tmp_path / "op"),
        "--viewer-token-file",
        str(tmp_path / "view"),
        "--transient-exceptions",
        "TransientError",
    )
    api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30.0)
    op = {"Authorization": f"Bearer {OP}"}
    view = {"Authorization": f"Bearer {VIEW}"}
    producer = celery_app(env)
    backend = redis.Redis.from_url(url)
    try:
        # Each listener serves only its part.
        assert exporter.get("/api/sitrep")[0] == 404 and exporter.get("/ui")[0] == 404
        assert api.get("/metrics").status_code == 404
        assert api.get("/ui").status_code == 200
        assert api.get("/api/sitrep").status_code == 401

        sleeper = producer.send_task("tests.sleep", args=[120], queue=queue).id

        def stuck() -> bool:
            body = api.get("/api/sitrep", headers=view).json()
            return any(s["id"] == sleeper for s in body["stuck"])

        wait_for(stuck, 30, interval=0.3, what="the poller sees the task as stuck")
        sitrep = api.get("/api/sitrep", headers=view).json()
        assert any("running longer than" in a for a in sitrep["immediate_actions"])
        assert api.post("/api/fix-it", json={"mode": "greedy"}, headers=view).status_code == 403
        plan = api.post("/api/fix-it", json={"mode": "greedy"}, headers=op).json()
        assert [(a["action"], a["target"]) for a in plan["actions"]] == [("revoke", sleeper)]
        done = api.post(
            "/api/approve", headers=op, json={"plan_id": plan["id"], "digest": plan["digest"]}
        ).json()
        assert done["outcomes"][0]["outcome"] == "ok", done

        def status(task_id: str) -> str | None:
            raw = backend.get(f"celery-task-meta-{task_id}")
            return json.loads(raw)["status"] if raw else None

        wait_for(lambda: status(sleeper) == "REVOKED", 30, what="sleeper revoked")

        marker = tmp_path / "healed"
        failing = producer.send_task("tests.fail_transient", args=[str(marker)], queue=queue).id

        def in_recent_failures() -> bool:
            page = api.get("/api/tasks/recent", params={"status": "FAILURE"}, headers=view)
            return failing in [t["id"] for t in page.json()["items"]]

        wait_for(in_recent_failures, 30, interval=0.3, what="the daemon's ledger has the failure")
        plan2 = api.post("/api/fix-it", json={"mode": "conservative"}, headers=op).json()
        assert [a["target"] for a in plan2["actions"]] == [failing]
        marker.write_text("ok")
        done2 = api.post(
            "/api/approve", headers=op, json={"plan_id": plan2["id"], "digest": plan2["digest"]}
        ).json()
        new_id = done2["outcomes"][0]["new_task_id"]

        def replay_succeeded() -> bool:
            resp = api.get(f"/api/tasks/{new_id}", headers=view)
            return resp.status_code == 200 and resp.json()["status"] == "SUCCESS"

        wait_for(replay_succeeded, 30, interval=0.3, what="the replay succeeds")
        assert api.get(f"/api/tasks/{new_id}", headers=view).json()["parent_id"] == failing
        exporter.wait_value("celery_exporter_plans_total", lambda v: v == 2, outcome="approved")
        assert exporter.value("celery_exporter_actions_total", action="retry", outcome="ok") == 1
        assert exporter.value("celery_exporter_actions_total", action="revoke", outcome="ok") == 1
    finally:
        api.close()
        producer.close()
        backend.close()
