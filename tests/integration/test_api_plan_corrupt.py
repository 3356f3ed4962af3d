"""A plan store holding values this exporter did not write, in a real Redis: approving or
reading a corrupt plan answers 404 (treated as gone; before, approving answered 500), counted
and logged once per plan; a corrupt recorded outcome or audit entry reads as unknown/empty;
an unreadable plan left among the executing ones does not stop new proposals."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient

from exporter.apicounters import ApiCounters
from exporter.celery_io import CeleryIO
from exporter.state import State
from tests.support.api import HEAD_O, HEAD_V, failure, make_app, make_config, new_state

pytestmark = pytest.mark.integration
PREFIX = "corrupt:"
STORE = f"{PREFIX}celery-ops-exporter:"
PLAN_ID = "0123456789abcdef0123456789abcdef"


class Env:
    def __init__(self, url: str) -> None:
        config = make_config(
            result_backend=url, broker_transport_options={"global_keyprefix": PREFIX}
        )
        self.redis = redis.Redis.from_url(url)
        self.state: State = new_state(config)
        self.state.ledger.apply(failure("t1"))
        io = CeleryIO(config, app=Celery("corrupt", broker="memory://", set_as_current=False))
        self.http = TestClient(make_app(self.state, io, self.redis))

    def approve(self, plan_id: str = PLAN_ID, digest: str = "d" * 64) -> Any:
        body = {"plan_id": plan_id, "digest": digest}
        return self.http.post("/api/approve", json=body, headers=HEAD_O)

    def unreadable_counted(self) -> int:
        return self.state.attached(ApiCounters).copy()[1].get("unreadable", 0)


@pytest.fixture
def env(redis_server: Any) -> Iterator[Env]:
    url = f"{redis_server.url}/7"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield Env(url)
    client.flushdb()


def _valid_plan(env: Env) -> dict[str, Any]:
    resp = env.http.post("/api/fix-it", json={"mode": "conservative"}, headers=HEAD_O)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


@pytest.mark.parametrize(
    "value",
    [
        b"{not json",
        b"\x80\x04\x95pickle",
        b"[1, 2, 3]",
        json.dumps({"id": PLAN_ID, "actions": "all"}).encode(),
        b"[" * 100_000,
    ],
    ids=["broken_json", "pickle", "a_list", "wrong_fields", "deep"],
)
def test_approving_a_corrupt_plan_is_404_counted_and_logged_once(
    env: Env, value: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    env.redis.set(f"{STORE}plan:{PLAN_ID}", value)
    with caplog.at_level(logging.WARNING, logger="exporter.remediation.service"):
        first = env.approve()
        second = env.approve()
        read = env.http.get(f"/api/plans/{PLAN_ID}", headers=HEAD_V)
    for resp in (first, second, read):
        assert resp.status_code == 404, resp.text
        assert resp.json()["message"] == (
            f"no readable plan {PLAN_ID!r}: the key holds something else"
        )
    assert env.unreadable_counted() == 1
    assert sum(PLAN_ID in r.getMessage() for r in caplog.records) == 1
    assert env.redis.get(f"{STORE}plan:{PLAN_ID}:decision") is None  # nothing was claimed


def test_a_plan_key_of_another_redis_type_is_404(env: Env) -> None:
    env.redis.rpush(f"{STORE}plan:{PLAN_ID}", "x")
    assert env.approve().status_code == 404
    assert env.http.get(f"/api/plans/{PLAN_ID}", headers=HEAD_V).status_code == 404
    assert env.unreadable_counted() == 1


def test_a_tampered_action_makes_the_plan_unreadable_not_runnable(env: Env) -> None:
    plan = _valid_plan(env)
    key = f"{STORE}plan:{plan['id']}"
    stored = json.loads(env.redis.get(key) or b"")
    stored["actions"][0]["kind"] = "rm -rf"
    env.redis.set(key, json.dumps(stored))
    assert env.approve(plan["id"], plan["digest"]).status_code == 404
    assert env.redis.get(f"{key}:decision") is None


def test_corrupt_outcomes_and_audit_entries_read_as_unknown(env: Env) -> None:
    plan = _valid_plan(env)
    assert env.approve(plan["id"], plan["digest"]).status_code == 200
    env.redis.lset(f"{STORE}plan:{plan['id']}:outcomes", 0, b"{garbage")
    got = env.http.get(f"/api/plans/{plan['id']}", headers=HEAD_V)
    assert got.status_code == 200, got.text
    (outcome,) = got.json()["outcomes"]
    assert (outcome["index"], outcome["outcome"], outcome["target"]) == (0, "unknown", "t1")

    env.redis.xadd(f"{STORE}audit", {"event": "x\x00y", "at": "soon", "detail": "{bad"})
    entries = env.http.get("/api/audit", headers=HEAD_O)
    assert entries.status_code == 200, entries.text
    newest = entries.json()["entries"][0]
    assert newest["event"] == "x\ufffdy" and newest["detail"] == {}
    assert newest["at"].startswith("1970-01-01")


def test_an_unreadable_plan_left_executing_does_not_stop_proposals(env: Env) -> None:
    env.redis.sadd(f"{STORE}executing", PLAN_ID, b"\xff\xfe")
    env.redis.set(f"{STORE}plan:{PLAN_ID}", b"{not json")
    plan = _valid_plan(env)
    assert [a["target"] for a in plan["actions"]] == ["t1"]
    assert PLAN_ID.encode() not in env.redis.smembers(f"{STORE}executing")  # finalized
