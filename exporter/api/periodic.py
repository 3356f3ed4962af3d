"""`GET /api/periodic`: beat's health per schedule source and one row per beat entry, for the
operator page's Periodic view.

Reads memory only: the board the beat sources fill (exporter/beat/source.py) and the ledger's
last times per task name, joined by exporter/beat/join.py exactly as the metrics and the
sitrep join them; an entry's state (ok, missed, failing, disabled, unknown) is
`join.entry_state`, the one rule they share. Never calls Redis or the database on the request
path. Every text here came through the beat decoders' cleaning (one printable line, bounded).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from exporter.api.views import human_seconds, ts
from exporter.beat import cron, join
from exporter.beat.model import Clocked, Every
from exporter.beat.source import SourceView, board_for
from exporter.state import State

MAX_ROWS = 1000  # rows answered at most; each source already stops at --beat-max-entries
STATE_ORDER = {join.MISSED: 0, join.FAILING: 1, join.UNKNOWN: 2, join.OK: 3, join.DISABLED: 4}
NO_ARGS = (
    "its arguments are unknown: the schedule file holds none (RedBeat and django-celery-beat "
    "do); send the task by hand"
)


class BeatSourceOut(BaseModel):
    source: str = Field(description="redbeat, django or file")
    beat_up: bool | None = Field(
        description="RedBeat's lock held and refreshed within --beat-stale-after; without a "
        "lock, an entry dispatched within its interval; null while nothing proves either"
    )
    read_ok: bool = Field(description="The last read of the schedule store worked")
    last_read_at: dt.datetime | None = Field(description="Last successful read")
    read_error: str | None = Field(description="Why the last read failed, if it did")
    lock_held: bool | None = Field(description="RedBeat's lock key exists; null: no lock")
    lock_refreshed_at: dt.datetime | None = None
    lock_age_seconds: float | None = Field(
        None, description="Seconds since beat last extended RedBeat's lock"
    )
    entries_total: int = Field(description="Entries the store holds (read: --beat-max-entries)")


class PeriodicEntryOut(BaseModel):
    source: str
    name: str = Field(description="The beat entry's name")
    task: str = Field(description="The task name it sends")
    kind: str = Field(description="interval, crontab, solar, clocked or other (rrule)")
    schedule: str = Field(description="The schedule in words, with a crontab's time zone")
    timezone: str | None = Field(None, description="A crontab's time zone")
    interval_seconds: float | None = Field(
        description="Seconds between the current due time and the next (a crontab's varies)"
    )
    queue: str | None
    enabled: bool
    state: join.EntryState = Field(
        description="missed: due runs passed --beat-grace without a dispatch; failing: the "
        "task's last run failed; unknown: no due time can be known (as the sitrep and metrics)"
    )
    next_due_at: dt.datetime | None = None
    last_dispatched_at: dt.datetime | None = None
    last_started_at: dt.datetime | None = None
    last_success_at: dt.datetime | None = None
    last_failure_at: dt.datetime | None = None
    overdue_seconds: float = Field(description="Past the next due time; 0 when not due")
    missed_runs: int = Field(description="Due times missed (capped at 1000)")
    shared_task: bool = Field(
        description="Other entries run the same task: start/success/failure are the task "
        "name's, not only this entry's"
    )
    run_now: bool = Field(description="Fix-it can propose sending it now (run_entries)")
    run_now_why_not: str | None = Field(None, description="Why it cannot, when it cannot")


class PeriodicOut(BaseModel):
    generated_at: dt.datetime
    sources: list[BeatSourceOut] = Field(description="Empty: no schedule source configured")
    entries: list[PeriodicEntryOut] = Field(
        description="Missed first, then failing, unknown, ok, disabled; soonest due first"
    )
    entries_total: int = Field(description="Rows before the cap")
    truncated: bool = Field(description=f"More than {MAX_ROWS} rows: the rest are left out")


def _schedule(row: join.EntryView) -> tuple[str, str | None]:
    schedule = row.entry.schedule
    if isinstance(schedule, Every):
        return f"every {human_seconds(schedule.seconds)}", None
    if isinstance(schedule, cron.Crontab):
        zone = getattr(schedule.tz, "key", None) or str(schedule.tz)
        return f"crontab {schedule.text} ({zone})", zone
    if isinstance(schedule, Clocked):
        at = ts(schedule.at)
        return ("once at " + at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "once"), None
    return schedule.text, None


def _why_not(row: join.EntryView, can_read_args: bool) -> str | None:
    if not row.entry.enabled:
        return "the entry is disabled"
    if not can_read_args:
        return NO_ARGS
    return None


def _entry(row: join.EntryView, can_read_args: bool) -> PeriodicEntryOut:
    words, zone = _schedule(row)
    why = _why_not(row, can_read_args)
    return PeriodicEntryOut(
        source=row.source,
        name=row.name,
        task=row.task,
        kind=row.kind,
        schedule=words,
        timezone=zone,
        interval_seconds=row.interval,
        queue=row.entry.queue,
        enabled=row.entry.enabled,
        state=join.entry_state(row),
        next_due_at=ts(row.next_due),
        last_dispatched_at=ts(row.last_dispatched),
        last_started_at=ts(row.last_started),
        last_success_at=ts(row.last_success),
        last_failure_at=ts(row.last_failure),
        overdue_seconds=row.overdue,
        missed_runs=row.missed,
        shared_task=row.shared_task,
        run_now=why is None,
        run_now_why_not=why,
    )


def _source(view: SourceView, status: join.BeatStatus | None, now: float) -> BeatSourceOut:
    refreshed = status.lock_refreshed_at if status is not None else None
    return BeatSourceOut(
        source=view.source,
        beat_up=status.up if status is not None else None,
        read_ok=view.up,
        last_read_at=ts(view.last_ok),
        read_error=None if view.up else view.last_error,
        lock_held=status.lock_held if status is not None else None,
        lock_refreshed_at=ts(refreshed),
        lock_age_seconds=max(0.0, now - refreshed) if refreshed is not None else None,
        entries_total=status.total if status is not None else 0,
    )


def build_periodic(state: State) -> PeriodicOut:
    now = state.clock.time()
    cfg = state.config
    board = board_for(state)
    last = state.ledger.last_times()
    sources: list[BeatSourceOut] = []
    rows: list[PeriodicEntryOut] = []
    for view in board.views():
        status = join.join(view, last, now, cfg.beat_grace, cfg.beat_stale_after)
        sources.append(_source(view, status, now))
        if status is not None:
            can = view.source in board.run_specs
            rows.extend(_entry(r, can) for r in status.entries)
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    rows.sort(key=lambda r: (STATE_ORDER[r.state], r.next_due_at or far, r.source, r.name))
    return PeriodicOut(
        generated_at=dt.datetime.fromtimestamp(now, dt.timezone.utc),
        sources=sources,
        entries=rows[:MAX_ROWS],
        entries_total=len(rows),
        truncated=len(rows) > MAX_ROWS,
    )


def add_routes(router: APIRouter, viewer: Callable[..., object], state: State) -> None:
    # A plain def: memory only, like the sitrep.
    @router.get("/api/periodic", response_model=PeriodicOut, tags=["read"])
    def periodic(_p: object = Depends(viewer)) -> PeriodicOut:
        """Celery beat: each schedule source's health and every entry with its schedule, next
        due, last dispatch, its task's last start/success/failure, state and whether fix-it
        can run it now."""
        return build_periodic(state)
