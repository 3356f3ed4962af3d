"""The ledger's read side: copies of counters, windows, running tasks and records.

Functions here work on the ledger's tables under the ledger's lock (the `Ledger` methods
take it), copy, and return plain data; only `counts` and `success_ratio` write, by first
releasing effects whose label grace has ended (attribution.expire).
"""

from __future__ import annotations

from exporter.ledger.attribution import expire
from exporter.ledger.counts import LedgerCounts
from exporter.ledger.entry import Entry, record_of
from exporter.ledger.guard import OTHER, UNKNOWN
from exporter.ledger.hosts import HostView
from exporter.ledger.packed import entry_of, lookup
from exporter.ledger.tables import LedgerTables
from exporter.taskdata import TaskRecord

RunningTask = tuple[str, str | None, str | None, str | None, float | None]


def counts(t: LedgerTables, now: float) -> LedgerCounts:
    expire(t, now)  # what waited past its grace counts now
    return LedgerCounts(
        tasks=dict(t.tasks),
        exceptions=dict(t.exceptions),
        entries=len(t.entries) + len(t.cold),
        evictions=t.evictions,
        overflowed_names=t.guards["name"].overflow,
        tasks_by_worker=dict(t.by_worker),
        runtime={k: h.snapshot() for k, h in t.hists.runtime.items()},
        queue_wait={k: h.snapshot() for k, h in t.hists.wait.items()},
        overflow={k: g.overflow for k, g in t.guards.items()},
        watermark=t.watermark,
        label_values={k: len(g.values) for k, g in t.guards.items()},
        evicted_ids=len(t.evicted),
        evicted_ids_dropped=t.evicted.given_up,
        unattributed=t.pending.unattributed,
        label_pending=len(t.pending),
        label_overflow=t.pending.early,
    )


def totals(t: LedgerTables, now: float) -> dict[str, int]:
    """counter -> total over every name and queue: what `counts()` gives summed, without its
    copies of every histogram (the sitrep and trends need only these sums; at 5,000 names
    the full copy was 40 ms under the ledger lock)."""
    expire(t, now)
    out: dict[str, int] = {}
    for (_name, _queue, counter), value in t.tasks.items():
        out[counter] = out.get(counter, 0) + value
    return out


def host_view(t: LedgerTables, now: float) -> HostView | None:
    """The per-node outcomes (`--compat danihodovic`), or None when they are not kept."""
    if t.hosts is None:
        return None
    expire(t, now)
    return t.hosts.view()


def running_tasks(t: LedgerTables) -> list[RunningTask]:
    """(task id, name, queue, worker, started_at) of tasks started and not finished."""
    return [(tid, e.name, e.queue, e.worker, e.started_at) for tid, e in t.running.items()]


def success_ratio(t: LedgerTables, now: float, window: float | None) -> dict[str, tuple[int, int]]:
    """name -> (succeeded, failed) within the window ending now; "" is all names."""
    expire(t, now)
    return t.outcomes.totals(now, window or t.outcomes.window)


def record(t: LedgerTables, task_id: str) -> TaskRecord | None:
    e = lookup(t, task_id)
    return _record(t, task_id, e) if e is not None else None


def _record(t: LedgerTables, task_id: str, value: Entry | bytes) -> TaskRecord:
    """The API's record, with the name label its counters use (without admitting it)."""
    e = entry_of(t, task_id, value)
    rec = record_of(task_id, e, t.sources)
    names, name = t.guards["name"], e.name
    if not name:
        rec.name_label = UNKNOWN
    elif name in names.values or len(names.values) < names.limit:
        rec.name_label = name
    else:
        rec.name_label = OTHER
    return rec


def sent_time(t: LedgerTables, task_id: str) -> float | None:
    e = lookup(t, task_id)
    return entry_of(t, task_id, e).sent_at if e is not None else None


def recent(t: LedgerTables, failed_only: bool) -> list[TaskRecord]:
    """Finished (or retried) tasks, newest first, each id once."""
    ids = list(t.recent_failed)
    if not failed_only:
        ids += list(t.recent)
    out: list[TaskRecord] = []
    seen: set[str] = set()
    for task_id in reversed(ids):
        e = lookup(t, task_id)
        if e is not None and task_id not in seen:
            seen.add(task_id)
            out.append(_record(t, task_id, e))
    return out
