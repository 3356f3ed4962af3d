"""The input that blinded the exporter (issue 9), one test per way, through the public paths:
the pub/sub and reconcile sources, the saved state, /metrics and the API read endpoints.

Each of these failed before the one-decoder change: a 500 on every scrape, a batch or a pass
lost to a RecursionError, or a 500 from the API.
"""

from __future__ import annotations

import json
from typing import Any

import fakeredis
from fastapi.testclient import TestClient
from prometheus_client.exposition import generate_latest

from exporter.celery_io import CeleryIO
from exporter.collectors import build_registry
from exporter.http import create_app
from exporter.keeper.gate import StartGate
from exporter.keeper.store import LedgerStore
from exporter.sources.reconcile import ReconcileSource
from exporter.sources.results import ResultsSource
from exporter.state import State
from tests.support.api import HEAD_V, make_app, make_config, new_state
from tests.support.hostile import check_exposition

SURROGATE_RESULT = (
    b'{"status": "FAILURE", "name": "proj.t\\ud800x", "queue": "q\\udfff",'
    b' "worker": "w\\ud800@h", "date_done": "2023-11-14T22:13:20+00:00",'
    b' "result": {"exc_type": "Err\\ud800", "exc_message": ["m\\ud800"]}}'
)


def deep_failure(depth: int) -> bytes:
    message = "[" * depth + '"x"' + "]" * depth
    return (
        '{"status": "FAILURE", "name": "t.deep", "date_done": "2023-11-14T22:13:20+00:00",'
        f' "result": {{"exc_type": "E", "exc_message": {message}}}}}'
    ).encode()


def success(i: int, when: str = "2023-11-14T22:13:20+00:00") -> bytes:
    return json.dumps(
        {"status": "SUCCESS", "name": "t.ok", "queue": "celery", "date_done": when}
    ).encode()


def scrape(state: State) -> bytes:
    """GET /metrics of the real app; must answer 200 with a page promtool accepts."""
    client = TestClient(create_app(state, CeleryIO(state.config), api=False))
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.text[:300]
    check_exposition(resp.content)
    return resp.content


def api(state: State, redis: Any, *paths: str) -> list[dict[str, Any]]:
    client = TestClient(make_app(state, CeleryIO(state.config), redis))
    out = []
    for path in paths:
        resp = client.get(path, headers=HEAD_V)
        assert resp.status_code == 200, (path, resp.text[:300])
        out.append(resp.json())
    return out


def counted(state: State, counter: str) -> int:
    return sum(v for (_n, _q, c), v in state.ledger.counts().tasks.items() if c == counter)


def test_a_surrogate_in_names_keeps_metrics_and_the_api_up() -> None:
    state = new_state(make_config())
    redis = fakeredis.FakeRedis()
    ResultsSource(state, lambda: redis, StartGate()).handle(
        [(b"celery-task-meta-s1", SURROGATE_RESULT)]
    )
    redis.set("celery-task-meta-s2", SURROGATE_RESULT)  # read by the API's backend fallback
    assert counted(state, "failed") == 1
    page = scrape(state).decode()
    assert 'name="proj.t\ufffdx",queue_name="q\ufffd"' in page
    assert 'exception="Err\ufffd"' in page
    one, stored = api(state, redis, "/api/tasks/s1", "/api/tasks/s2", "/api/sitrep")[:2]
    assert one["name"] == stored["name"] == "proj.t\ufffdx"
    assert one["error"] == stored["error"] == "m\ufffd"
    api(state, redis, "/api/tasks/recent", "/api/tasks/recent?status=FAILURE")


def test_a_deep_exception_message_costs_nothing_else_in_its_batch() -> None:
    state = new_state(make_config())
    batch = [(f"celery-task-meta-ok{i}".encode(), success(i)) for i in range(199)]
    batch.insert(100, (b"celery-task-meta-deep", deep_failure(1000)))  # orjson reads it
    batch.insert(50, (b"celery-task-meta-deeper", deep_failure(5000)))  # nobody reads it
    source = ResultsSource(state, lambda: None, StartGate())
    assert source.handle(batch) == 200
    state.clock.advance(state.config.label_grace + 1)  # the failure's name never comes
    assert counted(state, "succeeded") == 199 and counted(state, "failed") == 1
    detail = state.source_health()["pubsub"].stats
    assert detail.parse_errors == 1 and detail.skipped["invalid_json"] == 1
    error = state.ledger.get("deep").exception_message  # type: ignore[union-attr]
    assert error is not None and error.startswith("[[[[") and len(error) <= 2000
    scrape(state)


def test_a_deep_record_does_not_fail_the_reconcile_pass() -> None:
    redis = fakeredis.FakeRedis()
    for i in range(50):
        redis.set(f"celery-task-meta-ok{i}", success(i))
    redis.set("celery-task-meta-deep", deep_failure(1000))
    redis.set("celery-task-meta-deeper", deep_failure(5000))
    state = new_state(make_config(reconcile_batch=10))
    source = ReconcileSource(state, lambda: redis, StartGate())
    assert source.run_once() == 51
    assert state.source_health()["reconcile"].up
    assert state.source_health()["reconcile"].stats.parse_errors == 1
    scrape(state)


def test_dates_outside_datetime_are_unknown_not_errors() -> None:
    state = new_state(make_config())
    redis = fakeredis.FakeRedis()
    late = json.dumps(
        {
            "status": "FAILURE",
            "name": "t.late",
            "date_done": "9999-12-31T23:59:59-23:59",
            "result": {"exc_type": "E", "exc_message": ["x"]},
        }
    ).encode()
    early = success(0, when="0001-01-01T00:00:00+23:59")
    ResultsSource(state, lambda: None, StartGate()).handle(
        [(b"celery-task-meta-late", late), (b"celery-task-meta-early", early)]
    )
    redis.set("celery-task-meta-stored", late)
    _, recent, _, stored = api(
        state, redis, "/api/sitrep", "/api/tasks/recent", "/api/tasks/late", "/api/tasks/stored"
    )
    assert {item["id"] for item in recent["items"]} == {"late", "early"}
    assert stored["completed_at"] is None


def test_a_deep_backend_record_is_a_clear_404_not_a_500() -> None:
    state = new_state(make_config())
    redis = fakeredis.FakeRedis()
    redis.set("celery-task-meta-deep", deep_failure(10_000))
    client = TestClient(make_app(state, CeleryIO(state.config), redis))
    resp = client.get("/api/tasks/deep", headers=HEAD_V)
    assert resp.status_code == 404, resp.text[:300]
    assert "invalid_json" in resp.json()["message"]


def test_exception_text_reads_the_same_from_the_ledger_and_the_backend() -> None:
    state = new_state(make_config())
    redis = fakeredis.FakeRedis()
    record = json.dumps(
        {
            "status": "FAILURE",
            "name": "t.x",
            "date_done": "2023-11-14T22:13:20+00:00",
            "result": {"exc_type": "ValueError", "exc_message": ["bad", "input"]},
        }
    ).encode()
    ResultsSource(state, lambda: None, StartGate()).handle([(b"celery-task-meta-led", record)])
    redis.set("celery-task-meta-back", record)
    from_ledger, from_backend = api(state, redis, "/api/tasks/led", "/api/tasks/back")
    assert from_ledger["error"] == from_backend["error"] == "bad, input"


def test_a_poisoned_save_of_an_older_version_heals_on_load() -> None:
    redis = fakeredis.FakeRedis()
    store = LedgerStore(redis, "", "x")
    # What an older version saved after counting the surrogate result above, plus junk.
    poisoned = {
        "v": 1,
        "watermark": 1_700_000_000.0,
        "tasks": [
            ["proj.t\ud800x", "q", "failed", 3],
            ["proj.t\ufffdx", "q", "failed", 2],  # the same label once cleaned: added up
            ["t.ok", "celery", "succeeded", 5],
            ["t.neg", "celery", "succeeded", -4],
            ["t.float", "celery", "succeeded", 1.5],
            ["t.short", "celery"],
            "not a row",
        ],
        "by_worker": [["t.ok", "celery", "succeeded", "w\ud800", 5]],
        "exceptions": [["proj.t\ud800x", "Err\ud800", 3], ["t", None, 1]],
        "runtime": [["t\ud800", "q", [[1, 0, 0, 0, 0], 0.5]], ["t", "q", [[-1], "x"]]],
        "wait": "junk",
        "evictions": -3,
        "pass": ["run", "cursor", "start"],
    }
    redis.set(store.counters_key, json.dumps(poisoned))
    redis.hset(
        store.seen_key,
        "id1",
        "24\x1f0.0.0\x1f1700000000.0\x1ft\ud800\x1fq".encode("utf-8", "surrogatepass"),
    )
    redis.hset(store.seen_key, "id2", b"x\x1fjunk")
    state = new_state(make_config(task_worker_label=True))
    assert store.load(state.ledger)
    tasks = state.ledger.counts().tasks
    assert tasks[("proj.t\ufffdx", "q", "failed")] == 5
    assert tasks[("t.ok", "celery", "succeeded")] == 5
    assert not any(name.startswith(("t.neg", "t.float", "t.short")) for name, _q, _c in tasks)
    assert state.ledger.counts().evictions == 0
    page = scrape(state)
    assert b"\\ud800" not in page
    store.save(state.ledger)  # the next save stores it clean
    raw = redis.get(store.counters_key)
    assert raw is not None and b"\\ud800" not in raw
    assert generate_latest(build_registry(state))


def test_a_sample_no_decoder_cleaned_is_dropped_and_counted_not_a_500() -> None:
    from exporter.snapshot import PollHealth, Snapshot, WorkerSnapshot

    state = new_state(make_config())
    # Past every decoder: straight into the counters, and a worker name from inspect.
    state.ledger._tables.tasks[("t\ud800", "q", "succeeded")] = 1
    state.ledger._tables.tasks[("t.ok", "q", "succeeded")] = 2
    host = "w\ud800@h"
    state.set_snapshot(
        Snapshot(
            taken_at=1.0,
            workers={host: WorkerSnapshot(host, True, 1.0)},
            queues={},
            health=PollHealth(broker_up=True, last_success=1.0),
        )
    )
    page = scrape(state).decode()
    assert 'celery_task_succeeded_total{name="t.ok",queue_name="q"} 2.0' in page
    # every sample of the bad label set: its 8 state counters and two empty histograms (19 each)
    assert 'celery_exporter_render_dropped_total{collector="tasks"} 46.0' in page
    assert 'celery_exporter_render_dropped_total{collector="workers"} 0.0' not in page
    assert "celery_exporter_build_info" in page
