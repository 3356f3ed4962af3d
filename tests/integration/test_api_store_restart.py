"""Plans and the audit trail live in Redis: they survive both an exporter restart and a
Redis restart (with persistence), and a plan approved before is still refused after."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient

from exporter.celery_io import CeleryIO
from tests.support.api import HEAD_O, HEAD_V, failure, make_app, make_config, new_state

pytestmark = pytest.mark.integration


def test_plans_and_audit_survive_restarts(private_redis: Any) -> None:
    url = f"{private_redis.url}/3"
    config = make_config(result_backend=url)
    io = CeleryIO(config, app=Celery("restart", broker="memory://", set_as_current=False))
    state = new_state(config)
    state.ledger.apply(failure("t1"))
    first = TestClient(make_app(state, io, redis.Redis.from_url(url)))
    plan = first.post("/api/fix-it", json={"mode": "conservative"}, headers=HEAD_O).json()
    body = {"plan_id": plan["id"], "digest": plan["digest"]}
    assert first.post("/api/approve", json=body, headers=HEAD_O).status_code == 200

    private_redis.stop()
    down = first.get(f"/api/plans/{plan['id']}", headers=HEAD_V)
    assert down.status_code == 503 and "unavailable" in down.json()["message"]
    private_redis.start()

    # A new exporter process: new state (empty ledger), new client, same Redis.
    second = TestClient(make_app(new_state(config), io, redis.Redis.from_url(url)))
    again = second.get(f"/api/plans/{plan['id']}", headers=HEAD_V).json()
    assert again["status"] == "executed" and again["outcomes"][0]["outcome"] == "ok"
    assert second.post("/api/approve", json=body, headers=HEAD_O).status_code == 409
    events = [e["event"] for e in second.get("/api/audit", headers=HEAD_O).json()["entries"]]
    assert events == ["refused", "executed", "approved", "proposed"]
