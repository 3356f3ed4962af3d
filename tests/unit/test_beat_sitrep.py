"""The sitrep's plain-words lines about beat: a missed entry with how late it is, beat down
from RedBeat's lock, a failing entry, and an unreadable schedule."""

from __future__ import annotations

from exporter.api.sitrep import build_sitrep
from exporter.beat.model import BeatEntry, Every, LockState
from exporter.beat.source import BeatSource
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.state import State
from tests.support.beat import ScriptedReader, beat_scenario


def test_missed_and_failing_entries_in_plain_words() -> None:
    clock = FakeClock()  # 2023-11-14 22:13:20 UTC
    state = beat_scenario(clock)
    report = build_sitrep(state)
    # nightly: 02:00 Berlin (01:00 UTC) was due 21.2 h ago; last run the day before
    assert (
        "Periodic task nightly (app.nightly) has not run since 2023-11-13 01:00 UTC, "
        "21.2 h overdue." in report.immediate_actions
    )
    assert (
        "Periodic task report (app.report) failed on its last run at 22:11 UTC; "
        "last success 22:01 UTC." in report.watch_items
    )
    assert not any("ping" in line for line in report.immediate_actions + report.watch_items)
    assert not any(line.startswith("Beat") for line in report.immediate_actions)


def test_beat_down_from_redbeats_lock() -> None:
    clock = FakeClock()
    state = State(Config(beat_stale_after=300.0), clock)
    reader = ScriptedReader()
    reader.entries = [BeatEntry("ping", "app.ping", Every(60.0), next_due=clock.time() + 60)]
    reader.lock = LockState(True, 1500.0)
    source = BeatSource(state, reader)
    source.run()
    clock.advance(600)
    reader.lock = LockState(True, 900.0)
    source.run()
    actions = build_sitrep(state).immediate_actions
    assert (
        "Beat has not refreshed RedBeat's lock for 10 min (limit 5 min): it hangs or was "
        "killed; a new beat waits for the lock to expire." in actions
    )
    assert any(line.startswith("Periodic task ping (app.ping) has not run, 9 min overdue, ")
               for line in actions)  # fmt: skip
    reader.lock = LockState(False)
    source.run()
    assert any("RedBeat's lock is gone" in a for a in build_sitrep(state).immediate_actions)
    reader.down = True
    source.run()
    assert (
        "The redbeat beat schedule cannot be read: ConnectionError: Error 111 connecting to "
        "127.0.0.1:1. Connection refused.; beat metrics show its last good read."
        in build_sitrep(state).watch_items
    )
