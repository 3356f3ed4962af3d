"""The sitrep's sentences about Celery beat: beat down, entries that missed their runs, entries
whose runs fail, and schedule stores that cannot be read. Plain words, one line each, built
from the same join the metrics use (so the page and Prometheus agree)."""

from __future__ import annotations

import datetime as dt

from exporter.api.views import human_seconds
from exporter.beat.join import BeatStatus, EntryView, failing, join
from exporter.beat.source import board_for
from exporter.state import State

MAX_LINES = 10  # entries named per kind of problem; the rest are counted


def _when(ts: float, now: float) -> str:
    moment = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    if now - ts < 86400:
        return moment.strftime("%H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _ago(seconds: float) -> str:
    return human_seconds(max(0.0, seconds))


def _down(status: BeatStatus, now: float, stale_after: float) -> str:
    if status.lock_held is False:
        return (f"Beat is down: RedBeat's lock is gone ({status.source} schedule), so no "
                "periodic task is sent. Start celery beat.")  # fmt: skip
    if status.lock_held and status.lock_refreshed_at is not None:
        age = _ago(now - status.lock_refreshed_at)
        return (f"Beat has not refreshed RedBeat's lock for {age} (limit "
                f"{_ago(stale_after)}): it hangs or was killed; a new beat waits for the lock "
                "to expire.")  # fmt: skip
    return (f"Beat looks down ({status.source} schedule): a periodic task came due and was "
            "not sent, and nothing was sent since. Check the celery beat process.")  # fmt: skip


def _missed(row: EntryView, now: float, fixable: bool) -> str:
    since = (f"has not run since {_when(row.last_dispatched, now)}"
             if row.last_dispatched is not None else "has not run")  # fmt: skip
    runs = f", {row.missed:,} run(s) missed" if row.missed > 1 else ""
    # Only while beat is up: a restarted beat sends overdue entries itself (run_entry.py).
    fix = (f" Fix-it can send it now: POST /api/fix-it with run_entries "
           f"[\"{row.source}/{row.name}\"]." if fixable else "")  # fmt: skip
    return f"Periodic task {row.name} ({row.task}) {since}, {_ago(row.overdue)} overdue{runs}.{fix}"


def _failing_line(row: EntryView, now: float) -> str:
    assert row.last_failure is not None
    ok = (f"last success {_when(row.last_success, now)}" if row.last_success is not None
          else "no success seen")  # fmt: skip
    shared = " (other entries run the same task)" if row.shared_task else ""
    return (f"Periodic task {row.name} ({row.task}) failed on its last run at "
            f"{_when(row.last_failure, now)}; {ok}{shared}.")  # fmt: skip


def beat_advice(state: State, now: float) -> tuple[list[str], list[str]]:
    """(immediate actions, watch items) about beat."""
    act: list[str] = []
    watch: list[str] = []
    board = board_for(state)
    views = board.views()
    if not views:
        return act, watch
    cfg = state.config
    last = state.ledger.last_times()
    for view in views:
        if not view.up and view.errors:
            err = f": {view.last_error}" if view.last_error else ""
            watch.append(f"The {view.source} beat schedule cannot be read{err}; beat "
                         "metrics show its last good read.")  # fmt: skip
        status = join(view, last, now, cfg.beat_grace, cfg.beat_stale_after)
        if status is None:
            continue
        if status.up is False:
            act.append(_down(status, now, cfg.beat_stale_after))
        missed = sorted((r for r in status.entries if r.missed > 0), key=lambda r: -r.overdue)
        fixable = status.up is not False and view.source in board.run_specs
        act.extend(_missed(r, now, fixable) for r in missed[:MAX_LINES])
        if len(missed) > MAX_LINES:
            act.append(f"...and {len(missed) - MAX_LINES} more periodic tasks missed runs.")
        bad = [r for r in status.entries if r.entry.enabled and failing(r)]
        watch.extend(_failing_line(r, now) for r in bad[:MAX_LINES])
        if len(bad) > MAX_LINES:
            watch.append(f"...and {len(bad) - MAX_LINES} more periodic tasks failing.")
    return act, watch
