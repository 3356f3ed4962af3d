"""The page's data: task detail ring, trends ring, the browser's counts, and the API fields that
carry them (bounded, cleaned, hostile values kept as text), plus the bug-like exception hint."""

from __future__ import annotations

from typing import Any

import fakeredis
from fastapi.testclient import TestClient

from exporter.celery_io import CeleryIO
from exporter.clock import FakeClock
from exporter.ledger import Ledger
from exporter.remediation.planner import classify
from exporter.snapshot import EMPTY, PollHealth, QueueSnapshot, Snapshot
from exporter.taskdata import TRACEBACK_MAX, TaskUpdate
from exporter.taskdetail import MAX_CHILDREN, MAX_REPORTS, TaskDetails
from exporter.trends import Trends
from tests.support.api import HEAD_O, HEAD_V, T0, failure, make_app, make_config, new_state, success

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=1">\ud800\u2028'


def _u(task_id: str, state: str, source: str = "events", at: float = T0, **kw: Any) -> TaskUpdate:
    return TaskUpdate(task_id=task_id, state=state, source=source, timestamp=at, **kw)


def test_details_keep_each_state_per_source_once_and_every_retry_up_to_a_bound() -> None:
    d = TaskDetails(10)
    d.note_many([_u("a", "SENT"), _u("a", "SENT"), _u("a", "STARTED", at=T0 + 1)])
    d.note_many([_u("a", "RETRY", at=T0 + 2 + i) for i in range(100)])
    d.note_many([_u("a", "FAILURE", "pubsub", at=T0 + 200, traceback="x" * 20_000)])
    kept = d.get("a")
    assert kept is not None
    pairs = [(r.state, r.source) for r in kept.reports]
    assert pairs[:2] == [("SENT", "events"), ("STARTED", "events")]
    assert pairs.count(("RETRY", "events")) == MAX_REPORTS // 2
    assert ("FAILURE", "pubsub") in pairs and len(pairs) <= MAX_REPORTS
    assert kept.traceback is not None and len(kept.traceback) == TRACEBACK_MAX


def test_details_are_bounded_first_in_first_out_and_link_children() -> None:
    d = TaskDetails(5)
    d.note_many([_u("parent", "STARTED")])
    d.note_many([_u(f"c{i}", "SENT", parent_id="parent") for i in range(3)])
    assert (kept := d.get("parent")) is not None and kept.children == ("c0", "c1", "c2")
    assert (child := d.get("c1")) is not None and child.parent_id == "parent"
    d.note_many([_u(f"n{i}", "SENT") for i in range(4)])
    assert len(d) == 5 and d.get("parent") is None and d.get("c0") is None
    big = TaskDetails(MAX_CHILDREN * 3)
    big.note_many([_u("p", "STARTED")])
    big.note_many([_u(f"k{i}", "SENT", parent_id="p") for i in range(MAX_CHILDREN * 2)])
    assert (p := big.get("p")) is not None and len(p.children) == MAX_CHILDREN


def test_reconcile_adds_reports_to_kept_tasks_only() -> None:
    d = TaskDetails(10)
    d.note_many([_u("live", "STARTED")])
    d.note_known([_u("live", "SUCCESS", "reconcile"), _u("old", "SUCCESS", "reconcile")])
    assert d.get("old") is None
    assert (live := d.get("live")) is not None
    assert [r.source for r in live.reports] == ["events", "reconcile"]


def _snap(now: float, depth: int | None, up: bool = True) -> Snapshot:
    queues = {} if depth is None else {"celery": QueueSnapshot("celery", depth, 1, None)}
    return Snapshot(taken_at=now, queues=queues, health=PollHealth(broker_up=up, last_success=now))


def test_trends_count_deltas_per_step_and_leave_gaps() -> None:
    clock = FakeClock(T0 - T0 % 60)
    ledger = Ledger(clock=clock)
    trends = Trends(step=60)
    trends.sample(clock.time(), ledger, _snap(clock.time(), 5))  # the baseline
    ledger.apply_many([success(f"s{i}") for i in range(3)] + [failure("f1")])
    clock.advance(10)
    trends.sample(clock.time(), ledger, _snap(clock.time(), 7))
    clock.advance(180)  # two steps without a poll, then a poll with the broker down
    ledger.apply(success("s9"))
    trends.sample(clock.time(), ledger, _snap(clock.time(), 9, up=False))
    points = trends.points_since(clock.time())
    assert [(p.succeeded, p.failed, p.depth, p.depth_max) for p in points] == [
        (3, 1, 7, 7),
        (1, 0, None, None),
    ]
    assert points[1].start - points[0].start == 180


def test_trends_read_no_counters_while_the_ledger_is_idle() -> None:
    clock = FakeClock(T0)
    ledger = Ledger(clock=clock)
    trends = Trends(step=60)
    reads = [0]
    real = ledger.totals

    def counting() -> Any:
        reads[0] += 1
        return real()

    ledger.totals = counting  # type: ignore[method-assign]
    for _ in range(50):
        clock.advance(5)
        trends.sample(clock.time(), ledger, EMPTY)
    assert reads[0] == 1
    ledger.apply(success("s1"))
    trends.sample(clock.time(), ledger, EMPTY)
    assert reads[0] == 2


def test_trends_keep_only_the_last_hour() -> None:
    clock = FakeClock(T0)
    ledger = Ledger(clock=clock)
    trends = Trends(step=60)
    for _ in range(200):
        clock.advance(60)
        trends.sample(clock.time(), ledger, _snap(clock.time(), 1))
    assert len(trends.points_since(clock.time())) == 60


def _client(**changes: Any) -> tuple[TestClient, Any]:
    config = make_config(**changes)
    state = new_state(config)
    return TestClient(make_app(state, CeleryIO(config), fakeredis.FakeRedis())), state


def test_task_detail_carries_traceback_chain_reports_and_wait() -> None:
    client, state = _client()
    ups = [
        _u("t1", "SENT", at=T0 - 10, name="tests.fail_transient", queue="celery"),
        _u("t1", "STARTED", at=T0 - 4, worker="w1@host"),
        _u("t1", "RETRY", at=T0 - 3, exception_type="TransientError", traceback="first"),
        _u("t1", "FAILURE", at=T0 - 1, exception_type="TransientError", traceback="Traceback\n x"),
        _u("t2", "SENT", at=T0, name="tests.fail_transient", queue="celery", parent_id="t1"),
    ]
    state.ledger.apply_many(ups)
    state.details.note_many(ups)
    body = client.get("/api/tasks/t1", headers=HEAD_V).json()
    assert body["traceback"] == "Traceback\n x"
    assert body["children"] == ["t2"]
    assert body["wait_seconds"] == 6.0
    assert [(r["state"], r["source"]) for r in body["reports"]] == [
        ("SENT", "events"),
        ("STARTED", "events"),
        ("RETRY", "events"),
        ("FAILURE", "events"),
    ]
    assert client.get("/api/tasks/t2", headers=HEAD_V).json()["parent_id"] == "t1"
    # Lists stay light: no traceback, no reports.
    item = client.get("/api/tasks/recent", headers=HEAD_V).json()["items"][0]
    assert item["traceback"] is None and item["reports"] == []


def test_hostile_values_in_every_new_field_come_back_clean_and_bounded() -> None:
    client, state = _client()
    big = HOSTILE + "m" * 10_240
    # The sources hand the ledger decoded updates: decode as pub/sub and events do.
    import json

    from exporter.decode.events import parse_event
    from exporter.decode.records import parse_result

    record = {
        "status": "FAILURE",
        "task_id": "h1",
        "name": HOSTILE,
        "queue": HOSTILE,
        "worker": HOSTILE,
        "parent_id": HOSTILE,
        "root_id": HOSTILE,
        "result": {"exc_type": "E", "exc_message": [big]},
        "traceback": big * 2,
        "date_done": "2023-11-14T22:13:20",
    }
    raw = json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")
    event = {
        "type": "task-failed",
        "uuid": "h2",
        "hostname": HOSTILE,
        "exception": big,
        "traceback": big * 2,
        "parent_id": HOSTILE,
        "timestamp": T0,
    }
    ups = [parse_result(raw, "h1", "pubsub"), parse_event(event)]
    assert all(isinstance(u, TaskUpdate) for u in ups)
    state.ledger.apply_many(ups)  # type: ignore[arg-type]
    state.details.note_many(ups)  # type: ignore[arg-type]
    for task_id in ("h1", "h2"):
        text = client.get(f"/api/tasks/{task_id}", headers=HEAD_V).text
        assert "\\ud800" not in text and "\\u2028" not in text.replace("\\\\u2028", "")
        body = client.get(f"/api/tasks/{task_id}", headers=HEAD_V).json()
        assert len(body["traceback"]) <= TRACEBACK_MAX
        assert len(body["error"]) <= 300
    for task_id in ("h1", "h2"):
        tb = client.get(f"/api/tasks/{task_id}", headers=HEAD_V).json()["traceback"]
        assert "\ud800" not in tb and tb.startswith("<script>")


def test_recent_counts_matches_by_status_and_reach() -> None:
    client, state = _client()
    state.ledger.apply_many(
        [success(f"s{i}", at=T0 - 100 + i) for i in range(7)]
        + [failure(f"f{i}", at=T0 - 50 + i) for i in range(3)]
        + [success("other", name="tests.other", at=T0 - 200)]
    )
    page = client.get(
        "/api/tasks/recent",
        params={"status": "success", "name": "tests.add", "limit": 2},
        headers=HEAD_V,
    ).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    assert page["matched"] == 7
    assert page["by_status"] == {"SUCCESS": 7}
    assert page["kept"] == 11
    assert page["oldest_at"] is not None
    every = client.get("/api/tasks/recent", headers=HEAD_V).json()
    assert every["by_status"] == {"SUCCESS": 8, "FAILURE": 3} and every["matched"] == 11


def test_trends_endpoint_and_schema() -> None:
    client, state = _client(trends_step=10.0)
    now = state.clock.time()
    state.trends.sample(now, state.ledger, _snap(now, 4))
    state.ledger.apply_many([success("a"), failure("b")])
    state.clock.advance(10)
    state.trends.sample(state.clock.time(), state.ledger, _snap(state.clock.time(), 2))
    body = client.get("/api/trends", headers=HEAD_V).json()
    assert body["step_seconds"] == 10.0
    last = body["points"][-1]
    assert last["succeeded"] == 1 and last["failed"] == 1 and last["success_rate"] == 0.5
    assert last["finished_per_minute"] == 12.0 and last["queue_depth"] == 2
    assert "50% succeeded" in body["summary"] and "queue depth now 2" in body["summary"]
    assert client.get("/api/trends").status_code == 401
    schema = client.get("/openapi.json").json()
    assert "/api/trends" in schema["paths"] and "TrendsOut" in schema["components"]["schemas"]
    assert "reports" in schema["components"]["schemas"]["TaskOut"]["properties"]


def test_bug_like_exceptions_are_never_suggested_for_a_retry_by_mode() -> None:
    client, state = _client()
    assert classify("PermanentError", state.config) == "permanent"
    assert classify("ValidationError", state.config) == "permanent"
    assert classify("SomeTimeoutThing", state.config) == "unknown"
    state.ledger.apply(failure("p1", name="tests.fail_permanent", exc="PermanentError"))
    plan = client.post("/api/fix-it", json={"mode": "conservative"}, headers=HEAD_O).json()
    skipped = plan["not_actionable"][0]
    assert "balanced" not in skipped["fix"] and "bug" in skipped["fix"]


def test_cursor_paging_never_repeats_or_skips_a_task_between_microseconds() -> None:
    from exporter.api import views
    from exporter.taskdata import TaskRecord

    recs = [
        TaskRecord(task_id=f"t{i:03d}", state="SUCCESS", updated_at=T0 + i * 0.00000037)
        for i in range(300)
    ]
    ordered = views.sort_newest_first(recs)
    seen: list[str] = []
    after = None
    while True:
        rows, more = views.filter_records(
            ordered,
            status=None,
            name=None,
            queue=None,
            worker=None,
            since=None,
            until=None,
            after=after,
            limit=7,
        )
        seen += [r.task_id for r in rows]
        if not more:
            break
        after = views.decode_cursor(views.encode_cursor(rows[-1]))
    assert len(seen) == 300 and set(seen) == {r.task_id for r in recs}
