"""API edges: ids and cursors are validated (4xx, never 500 or 503 for a client mistake), odd
keys in Redis answer 404, refusals are counted, logged with a rate limit and audited, and
/api/docs loads nothing from a third party."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

import fakeredis
import pytest
from celery import Celery
from fastapi.testclient import TestClient

from exporter.apicounters import ApiCounters
from exporter.celery_io import CeleryIO
from exporter.clock import FakeClock
from exporter.http import create_app
from exporter.remediation.store import PlanStore
from exporter.state import State
from tests.support.api import (
    HEAD_O,
    HEAD_V,
    OPERATOR,
    VIEWER,
    failure,
    make_app,
    make_config,
    new_state,
)
from tests.support.common import wait_for


class Api:
    def __init__(self, **config: Any) -> None:
        self.config = make_config(**config)
        self.state: State = new_state(self.config)
        self.redis = fakeredis.FakeRedis()
        io = CeleryIO(self.config, app=Celery("edges", broker="memory://", set_as_current=False))
        self.app = make_app(self.state, io, self.redis)
        self.client = TestClient(self.app)
        self.store = PlanStore(self.redis)

    @property
    def clock(self) -> FakeClock:
        assert isinstance(self.state.clock, FakeClock)
        return self.state.clock


def _api() -> Api:
    return Api()


def _plan(api: Api) -> dict[str, Any]:
    api.state.ledger.apply_many([failure("t1")])
    resp = api.client.post("/api/fix-it", json={"mode": "conservative"}, headers=HEAD_O)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


# -- ids ---------------------------------------------------------------------------------------
def test_plan_ids_are_validated_never_a_500() -> None:
    api = _api()
    plan = _plan(api)
    assert api.client.get(f"/api/plans/{plan['id']}", headers=HEAD_V).status_code == 200
    # The decision key sits beside the plan's key: it used to be read as a plan (500).
    for bad in (f"{plan['id']}:decision", "x.y", "PLAN", "a" * 64, "p1"):
        resp = api.client.get(f"/api/plans/{bad}", headers=HEAD_V)
        assert resp.status_code == 422, (bad, resp.text)
        assert "plan_id" in resp.json()["message"]
    unknown = api.client.get(f"/api/plans/{uuid.uuid4().hex}", headers=HEAD_V)
    assert unknown.status_code == 404 and "no plan" in unknown.json()["message"]


@pytest.mark.parametrize(
    "stored", [b"not json", b"[1, 2]", json.dumps({"id": "x"}).encode(), b'{"actions": 5}']
)
def test_a_plan_key_holding_something_else_is_404(stored: bytes) -> None:
    api = _api()
    plan_id = uuid.uuid4().hex
    api.redis.set(f"celery-ops-exporter:plan:{plan_id}", stored)
    resp = api.client.get(f"/api/plans/{plan_id}", headers=HEAD_V)
    assert resp.status_code == 404, resp.text
    other = uuid.uuid4().hex
    api.redis.rpush(f"celery-ops-exporter:plan:{other}", b"a")
    assert api.client.get(f"/api/plans/{other}", headers=HEAD_V).status_code == 404


def test_approve_validates_plan_id_and_decision() -> None:
    api = _api()
    plan = _plan(api)
    for body in (
        {"plan_id": f"{plan['id']}:decision", "digest": plan["digest"]},
        {"plan_id": plan["id"], "digest": plan["digest"], "decision": "maybe"},
    ):
        resp = api.client.post("/api/approve", json=body, headers=HEAD_O)
        assert resp.status_code == 422, resp.text
    assert api.client.get(f"/api/plans/{plan['id']}", headers=HEAD_V).json()["status"] == "pending"


def test_task_ids_are_validated_and_a_wrong_key_type_is_404() -> None:
    api = _api()
    for bad in ("has space", "caf\u00e9", "x" * 201, "tab%09here"):
        resp = api.client.get(f"/api/tasks/{bad}", headers=HEAD_V)
        assert resp.status_code == 422, (bad, resp.text)
    # A Redis list where a result should be: it used to answer 503 (backend "unavailable").
    api.redis.rpush("celery-task-meta-listy", b"a", b"b")
    resp = api.client.get("/api/tasks/listy", headers=HEAD_V)
    assert resp.status_code == 404, resp.text
    assert "another kind of Redis value" in resp.json()["message"]
    assert api.client.get("/api/tasks/plain-unknown-id", headers=HEAD_V).status_code == 404
    resp = api.client.post("/api/fix-it", json={"task_ids": ["a b"]}, headers=HEAD_O)
    assert resp.status_code == 422


def test_audit_cursor_mistakes_are_400_or_422() -> None:
    api = _api()
    _plan(api)
    for bad in ("0-0", "zz", "00-1", "1-2-3", "9" * 16 + "-0"):
        resp = api.client.get(f"/api/audit?cursor={bad}", headers=HEAD_O)
        assert resp.status_code == 400, (bad, resp.text)  # 0-0 used to be 503
        assert "cursor" in resp.json()["message"]
    resp = api.client.get("/api/tasks/recent?cursor=not-a-cursor", headers=HEAD_V)
    assert resp.status_code == 400, resp.text
    first = api.client.get("/api/audit?limit=1", headers=HEAD_O).json()
    assert first["entries"] and first["next_cursor"]
    page = api.client.get(f"/api/audit?cursor={first['next_cursor']}", headers=HEAD_O)
    assert page.status_code == 200


# -- refusals ----------------------------------------------------------------------------------
def _refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]


def test_refusals_are_counted_logged_once_per_window_and_audited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = _api()
    caplog.set_level(logging.WARNING, logger="exporter.api.refusals")
    wrong = {"Authorization": "Bearer wrong-but-long-token-000"}
    for _ in range(3):
        assert api.client.get("/api/sitrep", headers=wrong).status_code == 401
    assert api.client.get("/api/sitrep").status_code == 401
    assert api.client.get("/api/audit", headers=HEAD_V).status_code == 403
    counts, _busy, _unaudited = api.state.attached(ApiCounters).bounds()
    assert counts == {"invalid_token": 3, "missing_token": 1, "insufficient_role": 1}
    lines = _refusal_lines(caplog)
    # One line per reason in the window, naming the client and the path.
    assert len(lines) == 3, lines
    assert any("GET /api/sitrep from testclient: invalid_token (401)" in m for m in lines)
    assert any("/api/audit" in m and "insufficient_role (403)" in m for m in lines)
    api.clock.advance(61)
    api.client.get("/api/sitrep", headers=wrong)
    lines = _refusal_lines(caplog)
    assert len(lines) == 4 and "2 more refused for this reason" in lines[-1]
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("wrong-but-long-token-000", VIEWER, OPERATOR):
        assert secret not in text
    # Audited by a background thread, without the token, with who (when known) and where.
    wait_for(lambda: len(_audit(api, "access_refused")) == 6, 5, what="refusals audited")
    entries = _audit(api, "access_refused")
    role = [e for e in entries if e["detail"]["reason"] == "insufficient_role"]
    assert role[0]["principal"].startswith("viewer#")
    assert {e["detail"]["client"] for e in entries} == {"testclient"}
    assert {e["principal"] for e in entries if e["detail"]["status"] == 401} == {"anonymous"}
    raw = repr(api.redis.xrange("celery-ops-exporter:audit"))
    assert "wrong-but-long-token-000" not in raw and VIEWER not in raw


def _audit(api: Api, event: str) -> list[dict[str, Any]]:
    return [e for e in api.store.audit_entries(500) if e["event"] == event]


def test_a_refusal_with_the_backend_down_still_answers_and_is_counted_unaudited() -> None:
    config = make_config()
    state = new_state(config)
    io = CeleryIO(config, app=Celery("edges", broker="memory://", set_as_current=False))
    server = fakeredis.FakeServer()
    server.connected = False  # every command raises ConnectionError
    down = fakeredis.FakeRedis(server=server)
    client = TestClient(make_app(state, io, down))
    assert client.get("/api/sitrep").status_code == 401
    wait_for(
        lambda: state.attached(ApiCounters).bounds()[2] == 1, 5, what="unaudited refusal counted"
    )


def test_metrics_refusals_are_counted_and_logged_never_audited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "metrics-token-000001"
    config = make_config(metrics_auth="token", metrics_tokens=(token,))
    state = State(config, FakeClock())
    client = TestClient(create_app(state))
    caplog.set_level(logging.WARNING, logger="exporter.api.refusals")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    body = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
    assert 'celery_exporter_api_refused_total{reason="missing_token"} 1.0' in body
    assert 'celery_exporter_api_refused_total{reason="invalid_token"} 1.0' in body
    assert any("GET /metrics from testclient" in m for m in _refusal_lines(caplog))


def test_hostile_paths_are_cleaned_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    api = _api()
    caplog.set_level(logging.WARNING, logger="exporter.api.refusals")
    api.client.get("/api/tasks/a%0Afake%20log%20line")
    (line,) = _refusal_lines(caplog)
    assert "\n" not in line and "a?fake log line" in line


# -- docs --------------------------------------------------------------------------------------
def test_api_docs_is_self_contained() -> None:
    config = make_config()
    client = TestClient(create_app(State(config, FakeClock())))
    resp = client.get("/api/docs")
    assert resp.status_code == 200
    html = resp.text
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "http://" not in csp and "https://" not in csp
    # No script, style or link from anywhere: only inline, hash-pinned code and our schema.
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+stylesheet", html)
    assert "//cdn" not in html and "https://" not in html
    assert "/api/openapi.json" in html
    schema = client.get("/api/openapi.json")
    assert schema.status_code == 200 and "/api/sitrep" in schema.json()["paths"]


# -- the bound on Redis-calling API work -------------------------------------------------------
def test_gate_answers_503_at_once_beyond_its_bound_and_frees_slots_when_calls_end() -> None:
    import asyncio
    import threading

    from fastapi import HTTPException

    from exporter.api.gate import ApiGate
    from exporter.apicounters import ApiCounters

    stats = ApiCounters()
    gate = ApiGate(2, stats)
    release = threading.Event()

    async def scenario() -> None:
        stuck = [asyncio.create_task(gate.run(release.wait)) for _ in range(2)]
        while gate.busy < 2:
            await asyncio.sleep(0)
        with pytest.raises(HTTPException) as refused:
            await gate.run(lambda: "never runs")
        assert refused.value.status_code == 503
        assert refused.value.headers == {"Retry-After": "2"}
        assert "--api-max-concurrent" in refused.value.detail
        # A client that gives up does not free its slot: the thread still waits on Redis.
        stuck[0].cancel()
        await asyncio.sleep(0.05)
        assert gate.busy == 2
        release.set()
        await asyncio.gather(*stuck, return_exceptions=True)
        assert await gate.run(lambda: "ok") == "ok"

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        gate.close()
    assert stats.bounds()[1] == 1
    wait_for(lambda: gate.busy == 0, 5, what="slots freed")
