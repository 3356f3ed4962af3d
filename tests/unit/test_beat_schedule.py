"""Beat schedules: crontab parsing and due times (checked against Celery's own crontab), DST in
a named zone, interval and missed-run arithmetic, and the schedule file's one-line errors."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab
from celery.utils.time import ffwd

from exporter.beat import cron
from exporter.beat import schedule as sched
from exporter.beat.model import Every
from exporter.beat.schedule_file import load
from exporter.config_checks import ConfigError

UTC = dt.timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def ts(*args: int, tz: dt.tzinfo = UTC) -> float:
    return dt.datetime(*args, tzinfo=tz).timestamp()


def test_fields_follow_celerys_grammar() -> None:
    assert cron.parse_field("*/15", 0, 60) == {0, 15, 30, 45}
    assert cron.parse_field("fri-mon", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")) == {
        5, 6, 0, 1}  # fmt: skip
    assert cron.parse_field("2-12/2", 1, 12) == {2, 4, 6, 8, 10, 12}
    assert cron.parse_field("1,5-6", 0, 24) == {1, 5, 6}
    for bad in ("", "60", "*/0", "a-b", "1,,2", "-1"):
        with pytest.raises(cron.CronError):
            cron.parse_field(bad, 0, 60)
    with pytest.raises(cron.CronError, match="5 fields"):
        cron.parse_expression("0 2 * *")


def test_next_due_agrees_with_celerys_crontab_in_utc() -> None:
    app = Celery(set_as_current=False)
    app.conf.timezone = "UTC"
    rnd = random.Random(7)
    specs = [("*/15", "*", "*", "*", "*"), ("0", "2", "*", "*", "*"),
             ("30", "1-3", "*", "*", "mon-fri"), ("0", "0", "1", "*", "*"),
             ("5", "*/6", "*", "1,7", "*"), ("0", "12", "13", "*", "fri"),
             ("*", "*", "*", "*", "sun")]  # fmt: skip
    for m, h, dom, mon, dow in specs:
        theirs = crontab(minute=m, hour=h, day_of_month=dom, month_of_year=mon, day_of_week=dow,
                         app=app)  # fmt: skip
        ours = cron.parse(m, h, dom, mon, dow)
        for _ in range(150):
            last = dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(
                minutes=rnd.randrange(0, 60 * 24 * 400)
            )
            start, delta, _now = theirs.remaining_delta(last, ffwd=ffwd)
            assert ours.next_after(last.timestamp()) == (start + delta).timestamp(), (m, h, last)


def test_day_of_month_and_weekday_must_both_match_as_in_celery() -> None:
    friday_13th = cron.parse_expression("0 12 13 * fri")
    # 2026-02-13 and 2026-03-13 are Fridays; 2026-01-13 is a Tuesday.
    assert friday_13th.next_after(ts(2026, 1, 1)) == ts(2026, 2, 13, 12)
    assert cron.parse_expression("0 0 31 2 *").next_after(ts(2026, 1, 1)) is None


def test_crontab_across_dst_in_berlin() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 2026-10-25: 03:00 CEST back to 02:00 CET.
    nightly = cron.parse_expression("30 2 * * *", BERLIN)
    before = ts(2026, 3, 28, 2, 30, tz=BERLIN)
    # 02:30 does not exist on the 29th: the next run is the 30th, 02:30 CEST (00:30 UTC).
    assert nightly.next_after(before) == ts(2026, 3, 30, 0, 30)
    # On the 25th of October 02:30 happens twice: due once, at the first (00:30 UTC).
    assert nightly.next_after(ts(2026, 10, 24, 12)) == ts(2026, 10, 25, 0, 30)
    assert nightly.next_after(ts(2026, 10, 25, 0, 30)) == ts(2026, 10, 26, 1, 30)
    hourly = cron.parse_expression("0 * * * *", BERLIN)
    # UTC hours across the spring change: local 01:00 CET = 00:00 UTC, then 03:00 CEST = 01:00.
    assert hourly.due_times(ts(2026, 3, 29, 0), ts(2026, 3, 29, 2), 10) == [
        ts(2026, 3, 29, 0), ts(2026, 3, 29, 1), ts(2026, 3, 29, 2)]  # fmt: skip
    # The autumn change: local 02:00 twice (00:00 and 01:00 UTC); runs at the first only.
    autumn = [ts(2026, 10, 24, 23), ts(2026, 10, 25, 0), ts(2026, 10, 25, 2), ts(2026, 10, 25, 3)]
    assert hourly.due_times(ts(2026, 10, 24, 23), ts(2026, 10, 25, 3), 10) == autumn
    # A daily entry's period is 23 h on the spring day and 25 h on the autumn day.
    daily = cron.parse_expression("0 1 * * *", BERLIN)
    assert sched.period(daily, ts(2026, 3, 29, 1, tz=BERLIN)) == 23 * 3600
    assert sched.period(daily, ts(2026, 10, 25, 1, tz=BERLIN)) == 25 * 3600


def test_intervals_and_missed_runs() -> None:
    every = Every(30.0)
    assert sched.next_after(every, 1000.0, anchor=1000.0) == 1030.0
    assert sched.next_after(every, 1075.0, anchor=1000.0) == 1090.0
    assert sched.missed(every, 1030.0, 1029.0) == 0
    assert sched.missed(every, 1030.0, 1030.0) == 1
    assert sched.missed(every, 1030.0, 1100.0) == 3
    assert sched.missed(Every(1.0), 0.0, 1e9) == sched.MAX_MISSED
    cron_daily = cron.parse_expression("0 2 * * *")
    assert sched.missed(cron_daily, ts(2026, 1, 1, 2), ts(2026, 1, 3, 3)) == 3


def write(tmp_path: Path, doc: object, name: str = "s.json") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_schedule_file_json_and_toml(tmp_path: Path) -> None:
    doc = {"entries": [
        {"name": "nightly", "task": "reports.nightly", "crontab": "0 2 * * *",
         "timezone": "Europe/Berlin"},
        {"name": "ping", "task": "app.ping", "every": 30, "enabled": False},
    ]}  # fmt: skip
    entries = load(write(tmp_path, doc))
    assert [e.name for e in entries] == ["nightly", "ping"]
    assert isinstance(entries[0].schedule, cron.Crontab)
    assert entries[0].schedule.tz == BERLIN
    assert entries[1].schedule == Every(30.0) and entries[1].enabled is False
    toml = '[[entries]]\nname = "n"\ntask = "t"\ncrontab = "*/5 * * * *"\n'
    (entry,) = load(write(tmp_path, toml, "s.toml"), "America/New_York")
    assert entry.schedule.tz == ZoneInfo("America/New_York")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{", "not valid JSON"),
        ({"entry": []}, "expected a list named 'entries'"),
        ({"entries": [{"task": "t", "every": 1}]}, "entry 1: 'name' must be a non-empty string"),
        ({"entries": [{"name": "a", "task": "t"}]}, "entry 1 (a): give exactly one of"),
        ({"entries": [{"name": "a", "task": "t", "every": -1}]}, "'every' must be a positive"),
        ({"entries": [{"name": "a", "task": "t", "every": True}]}, "'every' must be a positive"),
        ({"entries": [{"name": "a", "task": "t", "crontab": "61 * * * *"}]},
         "crontab '61 * * * *': 61 is out of range 0-59"),
        ({"entries": [{"name": "a", "task": "t", "crontab": "0 2 * * *", "timezone": "Mars/X"}]},
         "unknown time zone 'Mars/X'"),
        ({"entries": [{"name": "a", "task": "t", "every": 5, "timezone": "UTC"}]},
         "'timezone' applies to a crontab only"),
        ({"entries": [{"name": "a", "task": "t", "every": 5, "args": [1]}]}, "unknown key 'args'"),
        ({"entries": [{"name": "a", "task": "t", "every": 5}, {"name": "a", "task": "u",
                                                                "every": 5}]},
         "entry 2: duplicate name 'a'"),
        ({"entries": [{"name": "a\nb", "task": "t", "every": 5}]}, "must be one line"),
    ],
)  # fmt: skip
def test_schedule_file_errors_are_one_line(tmp_path: Path, doc: object, message: str) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as info:
        load(path)
    text = str(info.value)
    assert message in text and "\n" not in text and text.startswith("--beat-schedule-file ")


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "absent.json"))
