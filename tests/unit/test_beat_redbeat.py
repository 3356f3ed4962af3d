"""RedBeat's schedule read from Redis (fakeredis; the real beat is in
tests/integration/test_beat_redbeat.py): records as RedBeat's own encoder writes them, key
names from its settings, bounded reads, and hostile records skipped and counted."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import fakeredis
import pytest
from celery.schedules import crontab, schedule
from redbeat.decoder import RedBeatJSONEncoder

from exporter.beat import decode
from exporter.beat.cron import Crontab
from exporter.beat.model import Every
from exporter.beat.redbeat import RedBeatReader, lock_key_of

UTC = dt.timezone.utc


def put(r: Any, name: str, sched: Any, score: float, last: dt.datetime | None = None,
        prefix: str = "redbeat:", **extra: Any) -> None:  # fmt: skip
    definition = {"name": name, "task": f"app.{name}", "args": [1], "kwargs": {"k": "secret"},
                  "options": {"queue": "beat"}, "schedule": sched, "enabled": True,
                  **extra}  # fmt: skip
    r.hset(prefix + name, "definition", json.dumps(definition, cls=RedBeatJSONEncoder))
    meta = {"last_run_at": last, "total_run_count": 4}
    r.hset(prefix + name, "meta", json.dumps(meta, cls=RedBeatJSONEncoder))
    r.zadd(prefix + ":schedule", {prefix + name: score})


def test_key_names_follow_redbeats_settings() -> None:
    assert lock_key_of("redbeat:", None) == "redbeat::lock"
    assert lock_key_of("app1:", "beat-lock") == "app1:beat-lock"
    assert lock_key_of("redbeat:", "") == ""
    assert RedBeatReader(lambda: None, "app1:").schedule_key == "app1::schedule"


def test_reads_entries_as_redbeat_writes_them() -> None:
    r = fakeredis.FakeRedis()
    last = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    put(r, "ping", schedule(run_every=30), 1_777_636_830.0, last)
    put(r, "nightly", crontab(minute="0", hour="2"), 1_777_680_000.0, None)
    r.set("redbeat::lock", "token", px=1_500_000)
    read = RedBeatReader(lambda: r).read(100.0, 500)
    assert read.total == 2 and read.skipped == {}
    ping, nightly = read.entries  # soonest due first
    assert (ping.name, ping.task, ping.queue) == ("ping", "app.ping", "beat")
    assert ping.schedule == Every(30.0)
    assert ping.next_due == 1_777_636_830.0
    assert ping.last_run_at == last.timestamp() and ping.total_run_count == 4
    assert isinstance(nightly.schedule, Crontab) and nightly.schedule.text == "0 2 * * *"
    assert nightly.last_run_at is None
    assert read.lock is not None and read.lock.held and 1499 < (read.lock.ttl or 0) <= 1500
    # arguments are not kept, only a digest
    assert "secret" not in repr(read) and len(ping.args_digest) == 12


def test_last_run_at_in_a_named_zone_and_an_offset() -> None:
    r = fakeredis.FakeRedis()
    berlin = dt.datetime(2026, 7, 1, 2, 0, tzinfo=__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    put(r, "a", schedule(run_every=5), 10.0, berlin)
    offset = dt.datetime(2026, 7, 1, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    put(r, "b", schedule(run_every=5), 11.0, offset)
    a, b = RedBeatReader(lambda: r).read(0.0, 10).entries
    assert a.last_run_at == b.last_run_at == dt.datetime(2026, 7, 1, 0, 0, tzinfo=UTC).timestamp()


def test_bounded_by_max_entries_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("exporter.beat.redbeat.BATCH", 7)
    r = fakeredis.FakeRedis()
    for i in range(30):
        put(r, f"e{i:02d}", schedule(run_every=60), 1000.0 + i)
    read = RedBeatReader(lambda: r).read(0.0, 20)
    assert read.total == 30
    assert [e.name for e in read.entries] == [f"e{i:02d}" for i in range(20)]


HOSTILE: list[tuple[Any, str]] = [
    (b"\xff\xfe not utf-8", decode.BAD_TEXT),
    (b"{not json", decode.BAD_JSON),
    (b"[1, 2]", decode.WRONG_TYPE),
    (b"[" * 5000 + b"]" * 5000, decode.BAD_JSON),
    (b'"' + b"x" * (decode.MAX_RECORD + 1) + b'"', decode.TOO_LARGE),
    (json.dumps({"name": "x"}).encode(), decode.MISSING),
    (json.dumps({"name": "x", "task": "t", "schedule": {"__type__": "solar"}}).encode(),
     decode.BAD_SCHEDULE),
    (json.dumps({"name": "x", "task": "t", "schedule": {"__type__": "interval",
                                                        "every": "1"}}).encode(),
     decode.BAD_SCHEDULE),
    (json.dumps({"name": "x", "task": "t", "schedule": {"__type__": "crontab",
                                                        "minute": "99"}}).encode(),
     decode.BAD_SCHEDULE),
    (json.dumps({"name": "x", "task": "t", "schedule": 5}).encode(), decode.WRONG_TYPE),
]  # fmt: skip


def test_hostile_records_are_skipped_and_counted() -> None:
    r = fakeredis.FakeRedis()
    for i, (raw, _reason) in enumerate(HOSTILE):
        r.hset(f"redbeat:bad{i}", "definition", raw)
        r.zadd("redbeat::schedule", {f"redbeat:bad{i}": i})
    r.zadd("redbeat::schedule", {"redbeat:gone": 50, "redbeat:a-string": 51})
    r.set("redbeat:a-string", "not a hash")
    put(r, "good\x1b[31m", schedule(run_every=5), 60.0, None)
    r.hset("redbeat:good\x1b[31m", "meta", b"{broken")
    read = RedBeatReader(lambda: r).read(0.0, 100)
    expected: dict[str, int] = {}
    for _raw, reason in HOSTILE:
        expected[reason] = expected.get(reason, 0) + 1
    expected[decode.MISSING] += 1  # "gone": in the sorted set, hash deleted
    expected[decode.WRONG_TYPE] += 1  # "a-string": WRONGTYPE
    assert read.skipped == expected
    (good,) = read.entries
    assert good.name == "good [31m" and good.last_run_at is None  # clean text, meta lost only


@pytest.mark.parametrize(
    "value",
    [None, True, "x", float("nan"), 1e300, -5, {"__type__": "datetime"},
     {"__type__": "datetime", "year": 2026, "month": 13, "day": 1},
     {"__type__": "datetime", "year": 2026, "month": 1, "day": 1, "timezone": "No/Where"},
     {"__type__": "datetime", "year": 2026, "month": 1, "day": 1, "hour": "1"},
     {"__type__": "datetime", "year": 2026, "month": 1, "day": 1, "timezone": [1]}],
)  # fmt: skip
def test_timestamps_decode_totally(value: Any) -> None:
    assert decode.timestamp(value) is None


def test_lock_absent_or_without_expiry() -> None:
    r = fakeredis.FakeRedis()
    assert RedBeatReader(lambda: r).read(0.0, 10).lock == decode_lock(False, None)
    r.set("redbeat::lock", "t")
    assert RedBeatReader(lambda: r).read(0.0, 10).lock == decode_lock(True, None)
    assert RedBeatReader(lambda: r, lock_key="").read(0.0, 10).lock is None


def decode_lock(held: bool, ttl: float | None) -> Any:
    from exporter.beat.model import LockState

    return LockState(held, ttl)
