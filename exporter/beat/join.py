"""Schedule entries joined with the ledger: per entry its next due time, last dispatch, last
start, success and failure, how late it is and how many runs it missed; and whether beat is up.

Sources of each time, best first:
- next due: the scheduler's own (RedBeat's schedule score); otherwise computed from the
  schedule after the last dispatch (or after the exporter began watching, if none is known).
- last dispatched: the scheduler's `last_run_at` (RedBeat meta, django-celery-beat's column);
  otherwise the task name's last task-sent event, else its first sign at a worker
  (received, then started) when producers send no task-sent events.
- last started/succeeded/failed: the ledger, by task name. Entries that run one task name
  share these (`shared_task`): Celery's messages do not say which entry sent them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from exporter.beat import schedule as sched
from exporter.beat.model import BeatEntry, kind_of
from exporter.beat.source import SourceView
from exporter.taskdata import FAILURE, RECEIVED, SENT, STARTED, SUCCESS


@dataclass(frozen=True)
class EntryView:
    source: str
    entry: BeatEntry
    kind: str
    next_due: float | None
    interval: float | None
    last_dispatched: float | None
    last_started: float | None
    last_success: float | None
    last_failure: float | None
    overdue: float
    missed: int
    shared_task: bool

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def task(self) -> str:
        return self.entry.task


@dataclass(frozen=True)
class BeatStatus:
    source: str
    up: bool | None  # None: nothing proves either yet
    lock_held: bool | None
    lock_refreshed_at: float | None
    entries: tuple[EntryView, ...]
    total: int = 0  # entries the store holds (more than `entries` past --beat-max-entries)


def join_entry(
    source: str,
    entry: BeatEntry,
    times: dict[str, float],
    anchor: float,
    now: float,
    grace: float,
    shared: bool,
) -> EntryView:
    dispatched = entry.last_run_at
    if dispatched is None:
        dispatched = times.get(SENT) or times.get(RECEIVED) or times.get(STARTED)
    due = entry.next_due
    if due is None:
        start = dispatched if dispatched is not None else (entry.anchor or anchor)
        due = sched.next_after(entry.schedule, start, anchor=start)
        if due is None and dispatched is None:
            due = getattr(entry.schedule, "at", None)  # a clocked entry never run yet
    overdue = 0.0
    missed = 0
    if entry.enabled and due is not None:
        overdue = max(0.0, now - due)
        missed = sched.missed(entry.schedule, due, now - grace)
    return EntryView(
        source=source,
        entry=entry,
        kind=kind_of(entry.schedule),
        next_due=due,
        interval=sched.period(entry.schedule, due),
        last_dispatched=dispatched,
        last_started=times.get(STARTED),
        last_success=times.get(SUCCESS),
        last_failure=times.get(FAILURE),
        overdue=overdue,
        missed=missed,
        shared_task=shared,
    )


# An entry's state in words, decided here once for the sitrep, the API and the page.
EntryState = Literal["ok", "missed", "failing", "disabled", "unknown"]
OK: EntryState = "ok"
MISSED: EntryState = "missed"
FAILING: EntryState = "failing"
DISABLED: EntryState = "disabled"
UNKNOWN: EntryState = "unknown"


def failing(row: EntryView) -> bool:
    """Its task's last failure is newer than its last success and not older than its last
    dispatch: the run beat sent last failed (the task name's, when entries share it)."""
    if row.last_failure is None:
        return False
    last_ok = row.last_success or 0.0
    sent = row.last_dispatched
    return row.last_failure > last_ok and (sent is None or row.last_failure >= sent)


def entry_state(row: EntryView) -> EntryState:
    """disabled; missed (due runs passed --beat-grace without a dispatch); failing; unknown
    (no due time can be known); else ok."""
    if not row.entry.enabled:
        return DISABLED
    if row.missed > 0:
        return MISSED
    if failing(row):
        return FAILING
    if row.next_due is None:
        return UNKNOWN
    return OK


def join(
    view: SourceView,
    last: dict[str, dict[str, float]],
    now: float,
    grace: float,
    stale_after: float,
) -> BeatStatus | None:
    read = view.read
    if read is None:
        return None
    per_task = Counter(e.task for e in read.entries)
    anchor = view.first_ok if view.first_ok is not None else read.at
    rows = tuple(
        join_entry(view.source, e, last.get(e.task, {}), anchor, now, grace, per_task[e.task] > 1)
        for e in read.entries
    )
    lock = read.lock
    up: bool | None
    if lock is not None:
        fresh = view.lock_refreshed_at is not None and now - view.lock_refreshed_at <= stale_after
        up = lock.held and fresh
    else:
        up = _up_from_entries(rows, now, grace)
    return BeatStatus(
        source=view.source,
        up=up,
        lock_held=None if lock is None else lock.held,
        lock_refreshed_at=view.lock_refreshed_at,
        entries=rows,
        total=read.total,
    )


def _up_from_entries(rows: tuple[EntryView, ...], now: float, grace: float) -> bool | None:
    """Without a lock: down when a run came due (and was missed) after beat's latest dispatch
    of any entry; up when an entry was dispatched within its interval; unknown otherwise
    (e.g. just started with daily entries only). One broken entry while others are sent
    does not make beat down: its due time is before their dispatches."""
    sent = [r.last_dispatched for r in rows if r.last_dispatched is not None]
    latest = max(sent) if sent else None
    for row in rows:
        if (
            row.missed > 0
            and row.next_due is not None
            and (latest is None or row.next_due > latest)
        ):
            return False
    for row in rows:
        if not row.entry.enabled or row.interval is None or row.last_dispatched is None:
            continue
        if now - row.last_dispatched <= row.interval + grace:
            return True
    return None
