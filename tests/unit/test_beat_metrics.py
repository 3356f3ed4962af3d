"""Beat metrics from a schedule read joined with the ledger, on a fake clock: next due, last
dispatch/start/success/failure per entry, overdue and missed runs as time passes, beat's
liveness from RedBeat's lock or from dispatches, and the sources' own health."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.beat import cron
from exporter.beat.build import beat_sources
from exporter.beat.model import BeatEntry, Every, LockState
from exporter.beat.source import BeatSource
from exporter.clock import FakeClock
from exporter.collectors import build_registry
from exporter.config import Config
from exporter.state import State
from exporter.taskdata import TaskUpdate
from tests.support.beat import ScriptedReader, beat_scenario

UTC = dt.timezone.utc


def samples(state: State) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(build_registry(state)).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith(("celery_beat", "celery_exporter_beat")):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def entry(state: State, metric: str, name: str, task: str, source: str = "redbeat") -> float | None:
    key = (metric, (("entry", name), ("source", source), ("task", task)))
    return samples(state).get(key)


def beat(state: State, metric: str, source: str = "redbeat") -> float | None:
    return samples(state).get((metric, (("source", source),)))


def test_no_beat_source_no_beat_metrics() -> None:
    assert samples(State(Config(), FakeClock())) == {}


def test_scenario_joins_scheduler_and_ledger() -> None:
    clock = FakeClock()
    state = beat_scenario(clock)
    now = clock.time()
    m = "celery_beat_entry_"
    assert entry(state, m + "last_dispatched_timestamp_seconds", "ping", "app.ping") == now - 10
    assert entry(state, m + "last_success_timestamp_seconds", "ping", "app.ping") == now - 8
    assert entry(state, m + "last_started_timestamp_seconds", "ping", "app.ping") == now - 9
    assert entry(state, m + "last_failure_timestamp_seconds", "ping", "app.ping") is None
    # report: failed last, succeeded before (a reconcile backfill dates it by date_done)
    assert entry(state, m + "last_failure_timestamp_seconds", "report", "app.report") == now - 98
    assert entry(state, m + "last_success_timestamp_seconds", "report", "app.report") == now - 700
    assert entry(state, m + "overdue_seconds", "ping", "app.ping") == 0
    assert entry(state, m + "overdue_seconds", "nightly", "app.nightly") == 76400
    # 21 hours late for a daily entry: one due time missed; a disabled entry is never late
    assert entry(state, m + "missed_runs", "nightly", "app.nightly") == 1
    assert entry(state, m + "interval_seconds", "nightly", "app.nightly") == 86400
    assert entry(state, m + "overdue_seconds", "old", "app.old") == 0
    assert entry(state, m + "enabled", "old", "app.old") == 0
    assert beat(state, "celery_beat_up") == 1
    assert beat(state, "celery_beat_entries") == 5  # the store's count: one did not decode
    s = samples(state)
    assert s[("celery_exporter_beat_records_skipped_total",
              (("reason", "bad_json"), ("source", "redbeat")))] == 1  # fmt: skip
    # the store holds 5 entries: one did not decode, the other four are exported
    assert ("celery_exporter_beat_records_skipped_total",
            (("reason", "max_entries"), ("source", "redbeat"))) not in s  # fmt: skip


def test_lateness_moves_with_the_clock_between_reads() -> None:
    clock = FakeClock()
    state = State(Config(beat_grace=10.0), clock)
    reader = ScriptedReader()
    now = clock.time()
    reader.entries = [BeatEntry("ping", "app.ping", Every(60.0), next_due=now + 60,
                                last_run_at=now)]  # fmt: skip
    BeatSource(state, reader).run()
    m = "celery_beat_entry_"
    assert entry(state, m + "overdue_seconds", "ping", "app.ping") == 0
    clock.advance(65)
    assert entry(state, m + "overdue_seconds", "ping", "app.ping") == 5
    assert entry(state, m + "missed_runs", "ping", "app.ping") == 0  # within --beat-grace
    clock.advance(120)  # now +185: due times +60 and +120 passed; +180 is within the grace
    assert entry(state, m + "missed_runs", "ping", "app.ping") == 2


def test_redbeat_lock_refresh_decides_beat_up() -> None:
    clock = FakeClock()
    state = State(Config(beat_stale_after=100.0), clock)
    reader = ScriptedReader()
    source = BeatSource(state, reader)
    reader.lock = LockState(True, 50.0)
    source.run()
    assert beat(state, "celery_beat_up") == 1
    assert beat(state, "celery_beat_lock_refreshed_timestamp_seconds") == clock.time()
    # beat keeps extending the lock to its timeout (50 s): refreshed 10 s ago at each read
    for _ in range(5):
        clock.advance(40)
        reader.lock = LockState(True, 40.0)
        source.run()
        assert beat(state, "celery_beat_up") == 1
    refreshed = clock.time() - 10
    assert beat(state, "celery_beat_lock_refreshed_timestamp_seconds") == refreshed
    # killed: the lock is left to expire; it decays without refresh
    clock.advance(35)
    reader.lock = LockState(True, 5.0)
    source.run()
    assert beat(state, "celery_beat_lock_refreshed_timestamp_seconds") == refreshed
    clock.advance(70)
    assert beat(state, "celery_beat_up") == 0  # 115 s since refresh > --beat-stale-after
    # stopped cleanly: RedBeat releases the lock
    reader.lock = LockState(False)
    source.run()
    assert beat(state, "celery_beat_up") == 0 and beat(state, "celery_beat_lock_held") == 0
    clock.advance(10)
    reader.lock = LockState(True, 50.0)  # restarted
    source.run()
    assert beat(state, "celery_beat_up") == 1


def test_file_source_uses_the_ledger_for_dispatches_and_liveness() -> None:
    clock = FakeClock()
    state = State(Config(beat_grace=5.0), clock)
    reader = ScriptedReader("file")
    reader.entries = [BeatEntry("ping", "app.ping", Every(30.0)),
                      BeatEntry("nightly", "app.nightly",
                                cron.parse_expression("0 2 * * *"))]  # fmt: skip
    source = BeatSource(state, reader)
    start = clock.time()
    source.run()
    m = "celery_beat_entry_"
    # nothing known yet: due one interval after watching began, beat's state unknown
    assert entry(state, m + "next_due_timestamp_seconds", "ping", "app.ping", "file") == start + 30
    assert beat(state, "celery_beat_up", "file") is None
    clock.advance(20)
    state.ledger.apply(TaskUpdate("a", "SENT", "events", timestamp=clock.time(), name="app.ping"))
    assert entry(state, m + "last_dispatched_timestamp_seconds", "ping", "app.ping", "file") == (
        start + 20)  # fmt: skip
    assert entry(state, m + "next_due_timestamp_seconds", "ping", "app.ping", "file") == start + 50
    assert beat(state, "celery_beat_up", "file") == 1
    clock.advance(100)
    assert entry(state, m + "missed_runs", "ping", "app.ping", "file") == 3
    assert beat(state, "celery_beat_up", "file") == 0


def test_entries_sharing_a_task_are_flagged() -> None:
    clock = FakeClock()
    state = State(Config(), clock)
    reader = ScriptedReader()
    reader.entries = [BeatEntry("a", "app.t", Every(5.0), args_digest="1"),
                      BeatEntry("b", "app.t", Every(5.0), args_digest="2"),
                      BeatEntry("c", "app.u", Every(5.0))]  # fmt: skip
    BeatSource(state, reader).run()
    m = "celery_beat_entry_shared_task"
    assert (entry(state, m, "a", "app.t"), entry(state, m, "c", "app.u")) == (1, 0)


def test_store_down_keeps_the_last_read_and_says_so() -> None:
    clock = FakeClock()
    state = State(Config(beat_max_entries=1), clock)
    reader = ScriptedReader()
    reader.entries = [BeatEntry("a", "app.t", Every(5.0)), BeatEntry("b", "app.u", Every(5.0))]
    source = BeatSource(state, reader)
    source.run()
    assert beat(state, "celery_exporter_beat_source_up") == 1
    assert beat(state, "celery_beat_entries") == 2
    assert entry(state, "celery_beat_entry_enabled", "b", "app.u") is None  # past the bound
    s = samples(state)
    assert s[("celery_exporter_beat_records_skipped_total",
              (("reason", "max_entries"), ("source", "redbeat")))] == 1  # fmt: skip
    reader.down = True
    source.run()
    assert beat(state, "celery_exporter_beat_source_up") == 0
    assert beat(state, "celery_exporter_beat_read_errors_total") == 1
    assert beat(state, "celery_beat_entries") == 2 and reader.closed == 1
    reader.down = False
    source.run()
    assert beat(state, "celery_exporter_beat_source_up") == 1


def test_schedule_file_crontab_across_dst_on_the_fake_clock(tmp_path: Path) -> None:
    """A nightly 02:30 Europe/Berlin entry from a schedule file, its runs seen as task-sent
    events, the fake clock walked across the spring and autumn changes of 2026."""
    path = tmp_path / "schedule.toml"
    path.write_text('[[entries]]\nname = "nightly"\ntask = "app.nightly"\n'
                    'crontab = "30 2 * * *"\ntimezone = "Europe/Berlin"\n')  # fmt: skip
    berlin = ZoneInfo("Europe/Berlin")

    def at(*args: int) -> float:
        return dt.datetime(*args, tzinfo=berlin).timestamp()

    clock = FakeClock(at(2026, 3, 28, 2, 30))
    state = State(Config(beat_grace=60.0, beat_schedule_file=str(path)), clock)
    (source,) = beat_sources(state)
    source.run()
    m = "celery_beat_entry_"

    def sent() -> None:
        state.ledger.apply(TaskUpdate(f"n{clock.time()}", "SENT", "events",
                                      timestamp=clock.time(), name="app.nightly"))  # fmt: skip

    sent()  # 28 March, 02:30 CET
    due = entry(state, m + "next_due_timestamp_seconds", "nightly", "app.nightly", "file")
    # 29 March has no 02:30 (clocks jump 02:00 -> 03:00): next is the 30th, 02:30 CEST
    assert due == at(2026, 3, 30, 2, 30) == dt.datetime(2026, 3, 30, 0, 30, tzinfo=UTC).timestamp()
    assert entry(state, m + "interval_seconds", "nightly", "app.nightly", "file") == 86400
    clock.advance(at(2026, 3, 29, 12) - clock.time())  # the 29th passes: nothing was due
    assert entry(state, m + "overdue_seconds", "nightly", "app.nightly", "file") == 0
    assert entry(state, m + "missed_runs", "nightly", "app.nightly", "file") == 0
    clock.advance(at(2026, 3, 30, 2, 30) - clock.time() + 120)  # beat is silent at 02:30 CEST
    assert entry(state, m + "overdue_seconds", "nightly", "app.nightly", "file") == 120
    assert entry(state, m + "missed_runs", "nightly", "app.nightly", "file") == 1
    sent()
    assert entry(state, m + "missed_runs", "nightly", "app.nightly", "file") == 0
    # autumn: 25 October, 02:30 comes twice (CEST, then CET); due once, at the first
    clock.advance(dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp() - clock.time())
    sent()  # 02:30 CEST
    clock.advance(3600)  # 02:30 CET: the repeated hour, not due again
    assert entry(state, m + "overdue_seconds", "nightly", "app.nightly", "file") == 0
    assert entry(state, m + "next_due_timestamp_seconds", "nightly", "app.nightly", "file") == (
        at(2026, 10, 26, 2, 30))  # fmt: skip
    # from the first 02:30 of the 25th to the 26th's is 25 hours; the 26th on is 24 again
    assert entry(state, m + "interval_seconds", "nightly", "app.nightly", "file") == 86400


def test_skipped_records_are_logged_once_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    state = State(Config(), FakeClock())
    reader = ScriptedReader()
    reader.skipped = {"bad_json": 2}
    source = BeatSource(state, reader)
    with caplog.at_level(logging.WARNING, logger="exporter.beat.source"):
        source.run()
        source.run()
        reader.skipped = {"bad_json": 1, "wrong_type": 1}
        source.run()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "2 record(s) skipped (bad_json)" in lines[0] and "(wrong_type)" in lines[1]
    skipped = "celery_exporter_beat_records_skipped_total"
    assert samples(state)[(skipped, (("reason", "bad_json"), ("source", "redbeat")))] == 5
