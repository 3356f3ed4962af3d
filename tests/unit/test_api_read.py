"""The read endpoints: sitrep numbers and advice, recent tasks with filters and cursor, one
task from the ledger or the result backend, and what is never shown."""

from __future__ import annotations

import json

import fakeredis
import pytest
from fastapi.testclient import TestClient

from exporter.celery_io import CeleryIO
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.state import SourceHealth, SourceStatistics, State
from tests.support.api import (
    HEAD_V,
    T0,
    busy_snapshot,
    failure,
    make_app,
    make_config,
    new_state,
    success,
)


def _client(config: Config | None = None) -> tuple[TestClient, State, fakeredis.FakeRedis]:
    config = config or make_config()
    state = new_state(config)
    redis_client = fakeredis.FakeRedis()
    return TestClient(make_app(state, CeleryIO(config), redis_client)), state, redis_client


def test_sitrep_lists_the_longest_stuck_tasks_and_counts_them_all() -> None:
    from exporter.api.sitrep import STUCK_LINES, STUCK_NAMES
    from exporter.taskdata import STARTED, TaskUpdate

    client, state, _ = _client()
    total = STUCK_LINES * 3
    state.ledger.apply_many(
        TaskUpdate(f"t{i:04d}", STARTED, "events", timestamp=T0 - 5000 + i,
                   name=f"app.task_{i % (STUCK_NAMES + 5):02d}", queue="q", worker="w@h")
        for i in range(total)
    )  # fmt: skip
    state.clock.advance(30)  # past --label-grace
    body = client.get("/api/sitrep", headers=HEAD_V).json()
    assert body["stuck_total"] == total
    assert [s["id"] for s in body["stuck"]] == [f"t{i:04d}" for i in range(STUCK_LINES)]
    advice = [a for a in body["immediate_actions"] if "running longer than" in a]
    assert advice and advice[0].startswith(f"{total} task(s) running longer than")
    assert "app.task_09" in advice[0] and "app.task_10" not in advice[0]
    assert "and 5 more" in advice[0]


def test_sitrep_counts_and_plain_language_advice() -> None:
    client, state, _ = _client()
    state.set_snapshot(busy_snapshot(T0))
    state.ledger.apply_many([success(f"ok{i}") for i in range(6)])
    state.ledger.apply_many([failure(f"bad{i}") for i in range(4)])
    state.set_source_health(SourceHealth("pubsub", True, up=False, last_error="conn refused"))
    body = client.get("/api/sitrep", headers=HEAD_V).json()
    tasks = body["tasks"]
    assert (tasks["completed"], tasks["failed"], tasks["active"], tasks["pending"]) == (
        6,
        4,
        1,
        4213,
    )
    assert tasks["total"] == 6 + 4 + 1 + 4213
    assert tasks["success_rate"] == pytest.approx(0.6)
    assert tasks["window_seconds"] == 300.0
    assert tasks["since_start"]["failed"] == 4
    assert [q["name"] for q in body["queues"]] == ["celery", "default"]
    assert body["stuck"][0]["id"] == "stuck-1"
    assert body["stuck"][0]["running_seconds"] == 1200.0
    assert len(body["recent_failures"]) == 4
    actions = " | ".join(body["immediate_actions"])
    assert "Queue default has 4,210 waiting, oldest 12 min, 0 consumers" in actions
    assert "1 task(s) running longer than 10 min (tests.sleep)" in actions
    assert "Success rate is 60%" in actions and "mostly TransientError" in actions
    assert any("Task source pubsub is down: conn refused" in w for w in body["watch_items"])
    assert body["health"]["broker"]["up"] is True
    assert body["health"]["sources"][0]["name"] == "pubsub"


def test_sitrep_before_first_poll_and_broker_down() -> None:
    client, state, _ = _client()
    body = client.get("/api/sitrep", headers=HEAD_V).json()
    assert body["tasks"]["success_rate"] is None
    assert any("No cluster poll" in w for w in body["watch_items"])
    from dataclasses import replace

    from exporter.snapshot import PollHealth

    snap = replace(busy_snapshot(T0), health=PollHealth(broker_up=False, last_error="refused"))
    state.set_snapshot(snap)
    body = client.get("/api/sitrep", headers=HEAD_V).json()
    assert body["immediate_actions"][0].startswith("The broker is unreachable: refused")


def test_recent_filters_and_cursor_paging() -> None:
    client, state, _ = _client()
    clock = state.clock
    assert isinstance(clock, FakeClock)
    for i in range(7):
        state.ledger.apply(success(f"s{i}", at=T0 + i))
    state.ledger.apply(failure("f1", at=T0 + 3.5, queue="io"))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/tasks/recent", params=params, headers=HEAD_V).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["s6", "s5", "s4", "f1", "s3", "s2", "s1", "s0"]
    fails = client.get("/api/tasks/recent", params={"status": "failure"}, headers=HEAD_V).json()
    assert [t["id"] for t in fails["items"]] == ["f1"]
    by_q = client.get("/api/tasks/recent", params={"queue": "io"}, headers=HEAD_V).json()
    assert [t["id"] for t in by_q["items"]] == ["f1"]
    since = "2023-11-14T22:13:25Z"  # T0 + 5
    recent = client.get("/api/tasks/recent", params={"since": since}, headers=HEAD_V).json()
    assert [t["id"] for t in recent["items"]] == ["s6", "s5"]
    by_name = client.get(
        "/api/tasks/recent", params={"name": "tests.add", "worker": "w1@host"}, headers=HEAD_V
    ).json()
    assert len(by_name["items"]) == 7
    bad = client.get("/api/tasks/recent", params={"cursor": "garbage!"}, headers=HEAD_V)
    assert bad.status_code == 400 and "cursor" in bad.json()["message"]


def test_task_fields_hide_args_and_truncate_errors() -> None:
    client, state, _ = _client()
    long = failure("f1")
    from dataclasses import replace

    state.ledger.apply(replace(long, exception_message="x" * 5000, args=["secret-arg"]))
    body = client.get("/api/tasks/f1", headers=HEAD_V).json()
    assert body["status"] == "FAILURE"
    assert body["display_name"] == "Fail transient"
    assert len(body["error"]) == 300
    assert body["args"] is None and "secret-arg" not in json.dumps(body)
    assert body["description"].startswith("Fail transient failed on w1@host after 10 ms with")
    assert body["retryable"] is True and body["source"] == "ledger"
    shown, state2, _ = _client(make_config(show_task_args=True))
    state2.ledger.apply(replace(long, args=["visible"]))
    assert shown.get("/api/tasks/f1", headers=HEAD_V).json()["args"] == ["visible"]


def test_task_falls_back_to_the_result_backend_json_only() -> None:
    client, _state, redis_client = _client(
        make_config(backend_transport_options={"global_keyprefix": "app1:"})
    )
    meta = {
        "status": "FAILURE",
        "task_id": "b1",
        "name": "proj.tasks.send_email",
        "args": [1],
        "kwargs": {},
        "queue": "mail",
        "worker": "w2",
        "retries": 0,
        "date_done": "2026-01-02T03:04:05.123456+00:00",
        "traceback": "tb",
        "result": {
            "exc_type": "TimeoutError",
            "exc_message": ["smtp timed out"],
            "exc_module": "builtins",
        },
    }
    redis_client.set("app1:celery-task-meta-b1", json.dumps(meta))
    body = client.get("/api/tasks/b1", headers=HEAD_V).json()
    assert body["source"] == "backend" and body["status"] == "FAILURE"
    assert body["name"] == "proj.tasks.send_email" and body["display_name"] == "Send email"
    assert body["error"] == "smtp timed out" and body["exception_type"] == "TimeoutError"
    assert body["completed_at"].startswith("2026-01-02T03:04:05")
    assert body["retryable"] is True and body["args"] is None
    redis_client.set("app1:celery-task-meta-p1", b"\x80\x04\x95pickled")
    resp = client.get("/api/tasks/p1", headers=HEAD_V)
    assert resp.status_code == 404 and "never unpickles" in resp.json()["message"]
    missing = client.get("/api/tasks/nope", headers=HEAD_V)
    assert missing.status_code == 404 and "unknown" in missing.json()["message"]


def test_request_counter_and_collector() -> None:
    client, state, _ = _client()
    client.get("/api/sitrep", headers=HEAD_V)
    client.get("/api/sitrep")
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from exporter.collectors.api import ApiCollector

    registry = CollectorRegistry()
    registry.register(ApiCollector(state))
    text = generate_latest(registry).decode()
    assert 'celery_exporter_api_requests_total{code="200",endpoint="/api/sitrep"} 1.0' in text
    assert 'celery_exporter_api_requests_total{code="401",endpoint="/api/sitrep"} 1.0' in text
    assert 'celery_exporter_plans_total{outcome="proposed"} 0.0' in text


def test_sitrep_worker_rules_and_busy_queue_with_consumers() -> None:
    from exporter.snapshot import PollHealth, QueueSnapshot, Snapshot, WorkerSnapshot

    client, state, _ = _client()
    down = WorkerSnapshot("w2@host", False, T0 - 900, queues=("celery",))
    snap = Snapshot(
        taken_at=T0,
        workers={"w2@host": down},
        queues={"celery": QueueSnapshot("celery", 0, 0, None)},
        health=PollHealth(broker_up=True, last_success=T0),
    )
    state.set_snapshot(snap)
    body = client.get("/api/sitrep", headers=HEAD_V).json()
    assert body["immediate_actions"] == [
        "No worker is up: nothing will run. Start workers or check why they died."
    ]
    assert body["watch_items"] == ["Worker w2@host has not been seen for 15 min."]
    up = WorkerSnapshot("w1@host", True, T0, active=2, queues=("celery",))
    slow = Snapshot(
        taken_at=T0,
        workers={"w1@host": up},
        queues={"celery": QueueSnapshot("celery", 50, 1, 400.0)},
        health=PollHealth(broker_up=True, last_success=T0),
    )
    state.set_snapshot(slow)
    body = client.get("/api/sitrep", headers=HEAD_V).json()
    assert body["immediate_actions"] == []
    assert body["watch_items"] == [
        "Queue celery has 50 waiting, oldest 7 min, 1 consumers: workers are not keeping up."
    ]


def test_odd_backend_records_never_crash_the_task_endpoint() -> None:
    client, _state, redis_client = _client()
    odd = [
        {"status": 5, "retries": "many", "name": ["x"], "date_done": 12, "result": "boom"},
        {"status": "FAILURE", "result": {"exc_type": None, "exc_message": {"a": 1}}},
        {"status": "FAILURE", "date_done": "not a date", "retries": -1, "worker": 7},
        {},
    ]
    for i, meta in enumerate(odd):
        redis_client.set(f"celery-task-meta-odd{i}", json.dumps(meta))
        resp = client.get(f"/api/tasks/odd{i}", headers=HEAD_V)
        assert resp.status_code == 200, (meta, resp.text)
    redis_client.set("celery-task-meta-list", json.dumps([1, 2]))
    assert client.get("/api/tasks/list", headers=HEAD_V).status_code == 404


def test_sitrep_says_when_task_events_are_off() -> None:
    client, state, _ = _client()
    state.set_source_health(
        SourceHealth("events", True, up=True, stats=SourceStatistics(task_events_enabled=False))
    )
    body = client.get("/api/sitrep", headers=HEAD_V).json()
    assert any("-E is off" in w for w in body["watch_items"])
    state.update_source("events", stats=SourceStatistics(task_events_enabled=True))
    body = client.get("/api/sitrep", headers=HEAD_V).json()
    assert not any("-E is off" in w for w in body["watch_items"])
