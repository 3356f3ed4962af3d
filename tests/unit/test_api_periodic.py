"""GET /api/periodic on a board filled through the real RedBeat reader and decoders (records
written by RedBeat's own encoder into fakeredis): per-entry state agrees with the sitrep's
sentences and the metrics, hostile names come out as bounded text, and the request never
touches the schedule store."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import fakeredis
from celery.schedules import crontab, schedule
from fastapi.testclient import TestClient
from redbeat.decoder import RedBeatJSONEncoder

from exporter.api.sitrep import build_sitrep
from exporter.beat.redbeat import RedBeatReader
from exporter.beat.source import BeatSource
from exporter.celery_io import CeleryIO
from exporter.state import State
from exporter.taskdata import TaskUpdate
from tests.support.api import HEAD_V, T0, make_app, make_config, new_state

UTC = dt.timezone.utc
SCRIPT = "<script>alert(1)</script>"


def put(r: Any, name: str, task: str, sched: Any, score: float, last: float | None,
        key: str | None = None) -> None:  # fmt: skip
    definition = {"name": name, "task": task, "args": [], "kwargs": {}, "enabled": True,
                  "options": {"queue": "beat"}, "schedule": sched}  # fmt: skip
    key = "redbeat:" + (key or name)
    # json.dumps escapes a lone surrogate as \ud800: it reaches the decoder as RedBeat stores it
    r.hset(key, "definition", json.dumps(definition, cls=RedBeatJSONEncoder))
    when = dt.datetime.fromtimestamp(last, UTC) if last is not None else None
    meta = {"last_run_at": when, "total_run_count": 3}
    r.hset(key, "meta", json.dumps(meta, cls=RedBeatJSONEncoder))
    r.zadd("redbeat::schedule", {key: score})


def scenario() -> tuple[TestClient, State, fakeredis.FakeServer]:
    server = fakeredis.FakeServer()
    r = fakeredis.FakeRedis(server=server)
    put(r, "healthy", "app.ping", schedule(run_every=30), T0 + 20, T0 - 10)
    put(r, "broken", "app.report", schedule(run_every=60), T0 + 50, T0 - 10)
    put(r, "nightly", "app.nightly", crontab(minute="0", hour="2"), T0 - 7200, T0 - 93600)
    put(r, SCRIPT + "\u2028" + "x" * 10_000, SCRIPT, schedule(run_every=5), T0 + 1, None, "hostile")
    # orjson refuses a lone surrogate: the record is skipped and counted, never shown
    put(r, "sur\ud800", "app.s", schedule(run_every=5), T0 + 2, None, "surrogate")
    r.set("redbeat::lock", "token", px=1_500_000)
    config = make_config(beat_grace=30.0)
    state = new_state(config)
    for update in (
        TaskUpdate("a", "STARTED", "events", timestamp=T0 - 9, name="app.ping"),
        TaskUpdate("a", "SUCCESS", "events", timestamp=T0 - 8),
        TaskUpdate("b", "STARTED", "events", timestamp=T0 - 9, name="app.report"),
        TaskUpdate("b", "FAILURE", "events", timestamp=T0 - 8, exception_type="KeyError"),
    ):
        state.ledger.apply(update)
    BeatSource(state, RedBeatReader(lambda: r)).run()
    client = TestClient(make_app(state, CeleryIO(config), fakeredis.FakeRedis()))
    return client, state, server


def test_entries_and_beat_health_as_the_sitrep_sees_them() -> None:
    client, state, server = scenario()
    server.connected = False  # the schedule store is gone: the request reads memory only
    resp = client.get("/api/periodic", headers=HEAD_V)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    (source,) = body["sources"]
    assert source["source"] == "redbeat" and source["beat_up"] is True and source["lock_held"]
    assert source["read_ok"] and source["entries_total"] == 5  # one skipped: 4 rows
    assert 0 <= source["lock_age_seconds"] < 1
    rows = {e["name"][:20]: e for e in body["entries"]}
    assert [e["state"] for e in body["entries"]] == ["missed", "failing", "ok", "ok"]
    nightly, broken, healthy = rows["nightly"], rows["broken"], rows["healthy"]
    assert nightly["schedule"] == "crontab 0 2 * * * (UTC)" and nightly["timezone"] == "UTC"
    assert nightly["overdue_seconds"] == 7200 and nightly["missed_runs"] == 1
    assert nightly["last_dispatched_at"] == "2023-11-13T20:13:20Z" and nightly["run_now"]
    assert healthy["schedule"] == "every 30 s" and healthy["queue"] == "beat"
    assert healthy["last_success_at"] == "2023-11-14T22:13:12Z"
    assert healthy["last_failure_at"] is None and healthy["run_now_why_not"] is None
    assert broken["last_failure_at"] == "2023-11-14T22:13:12Z" and broken["state"] == "failing"
    # the same rule as the sitrep's sentences: missed -> immediate, failing -> watch
    report = build_sitrep(state)
    assert any(line.startswith("Periodic task nightly ") for line in report.immediate_actions)
    assert any(line.startswith("Periodic task broken ") for line in report.watch_items)
    assert not any("healthy" in line for line in report.immediate_actions + report.watch_items)
    assert body["entries_total"] == 4 and body["truncated"] is False


def test_hostile_names_are_one_bounded_line_of_text() -> None:
    client, _, _ = scenario()
    body = client.get("/api/periodic", headers=HEAD_V).json()
    (hostile,) = [e for e in body["entries"] if e["name"].startswith("<script>")]
    assert len(hostile["name"]) == 200 and "\u2028" not in hostile["name"]
    assert hostile["name"].startswith(SCRIPT + " x") and hostile["task"] == SCRIPT
    assert hostile["state"] == "ok" and hostile["last_dispatched_at"] is None
    assert not any(e["name"].startswith("sur") for e in body["entries"])


def test_viewer_token_required_and_schedule_file_entries_cannot_run_now(tmp_path: Any) -> None:
    from exporter.beat.schedule_file import FileReader

    path = tmp_path / "beat.toml"
    path.write_text('[[entries]]\nname = "n"\ntask = "t.n"\ncrontab = "0 2 * * *"\n'
                    'timezone = "Europe/Berlin"\n')  # fmt: skip
    config = make_config()
    state = new_state(config)
    BeatSource(state, FileReader(str(path), config.beat_timezone)).run()
    client = TestClient(make_app(state, CeleryIO(config), fakeredis.FakeRedis()))
    assert client.get("/api/periodic").status_code == 401
    (row,) = client.get("/api/periodic", headers=HEAD_V).json()["entries"]
    assert row["schedule"] == "crontab 0 2 * * * (Europe/Berlin)" and row["source"] == "file"
    assert row["run_now"] is False and "schedule file" in row["run_now_why_not"]
    assert row["state"] == "ok" and row["next_due_at"] is not None


def test_disabled_beat_down_and_the_cap(monkeypatch: Any) -> None:
    server = fakeredis.FakeServer()
    r = fakeredis.FakeRedis(server=server)
    put(r, "a", "app.a", schedule(run_every=30), T0 - 600, T0 - 630)
    put(r, "b", "app.b", schedule(run_every=30), T0 + 20, T0 - 10)
    off = json.loads(r.hget("redbeat:b", "definition") or b"{}")
    r.hset("redbeat:b", "definition", json.dumps({**off, "enabled": False}))
    config = make_config(beat_grace=30.0)
    state = new_state(config)
    BeatSource(state, RedBeatReader(lambda: r)).run()  # no lock key: RedBeat's lock is gone
    client = TestClient(make_app(state, CeleryIO(config), fakeredis.FakeRedis()))
    body = client.get("/api/periodic", headers=HEAD_V).json()
    (source,) = body["sources"]
    assert source["beat_up"] is False and source["lock_held"] is False
    assert source["lock_age_seconds"] is None
    a, b = body["entries"]
    assert (a["name"], a["state"], a["run_now"]) == ("a", "missed", True)
    assert (b["name"], b["state"], b["run_now"]) == ("b", "disabled", False)
    assert b["run_now_why_not"] == "the entry is disabled" and b["overdue_seconds"] == 0
    monkeypatch.setattr("exporter.api.periodic.MAX_ROWS", 1)
    body = client.get("/api/periodic", headers=HEAD_V).json()
    assert [e["name"] for e in body["entries"]] == ["a"]
    assert body["entries_total"] == 2 and body["truncated"] is True
