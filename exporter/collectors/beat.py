"""Celery beat metrics: every schedule entry joined with the ledger, beat's liveness, and the
health of the schedule sources (`celery_beat_*`, `celery_exporter_beat_*`).

Reads the board the beat sources fill (exporter/beat/source.py) and the ledger's last times
per task name; computes lateness at scrape time with the injectable clock. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.beat.join import BeatStatus, EntryView, join
from exporter.beat.source import SourceView, board_for
from exporter.state import State

_ENTRY = ["source", "entry", "task"]
# (metric, help, value of a row); a row without a value has no sample
_PER_ENTRY = (
    ("celery_beat_entry_enabled", "1 when the beat entry is enabled, else 0",
     lambda r: 1.0 if r.entry.enabled else 0.0),
    ("celery_beat_entry_next_due_timestamp_seconds", "When the entry is next due (the "
     "scheduler's own time, else computed from its schedule), Unix seconds",
     lambda r: r.next_due),
    ("celery_beat_entry_interval_seconds", "Seconds between the entry's current due time and "
     "the one after it (a crontab's period varies)", lambda r: r.interval),
    ("celery_beat_entry_last_dispatched_timestamp_seconds", "When beat last sent the entry "
     "(scheduler metadata, else the task name's last task-sent event)",
     lambda r: r.last_dispatched),
    ("celery_beat_entry_last_started_timestamp_seconds", "Last start of the entry's task name "
     "(ledger; shared by entries of one task name)", lambda r: r.last_started),
    ("celery_beat_entry_last_success_timestamp_seconds", "Last success of the entry's task "
     "name (ledger; shared by entries of one task name)", lambda r: r.last_success),
    ("celery_beat_entry_last_failure_timestamp_seconds", "Last failure of the entry's task "
     "name (ledger; shared by entries of one task name)", lambda r: r.last_failure),
    ("celery_beat_entry_overdue_seconds", "Seconds past the entry's next due time without a "
     "dispatch; 0 when not due", lambda r: r.overdue),
    ("celery_beat_entry_missed_runs", "Due times that passed more than --beat-grace ago "
     "without a dispatch (capped at 1000)", lambda r: float(r.missed)),
    ("celery_beat_entry_shared_task", "1 when other entries run the same task name, so the "
     "ledger's start/success/failure times belong to any of them",
     lambda r: 1.0 if r.shared_task else 0.0),
)  # fmt: skip


class BeatCollector:
    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        views = board_for(self.state).views()
        if not views:
            return
        cfg = self.state.config
        now = self.state.clock.time()
        last = self.state.ledger.last_times()
        statuses = [
            s
            for s in (join(v, last, now, cfg.beat_grace, cfg.beat_stale_after) for v in views)
            if s is not None
        ]
        yield from _beat(statuses)
        yield from _entries([row for s in statuses for row in s.entries])
        yield from _health(views)


def _beat(statuses: list[BeatStatus]) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "celery_beat_up",
        "1 when beat is alive: RedBeat's lock held and refreshed within --beat-stale-after; "
        "without a lock, an entry dispatched within its interval. Absent while unknown",
        labels=["source"],
    )
    held = GaugeMetricFamily(
        "celery_beat_lock_held", "1 when RedBeat's lock key exists", labels=["source"]
    )
    refreshed = GaugeMetricFamily(
        "celery_beat_lock_refreshed_timestamp_seconds",
        "When beat last extended RedBeat's lock (from its remaining time), Unix seconds",
        labels=["source"],
    )
    entries = GaugeMetricFamily(
        "celery_beat_entries",
        "Entries the schedule store holds, by source (at most --beat-max-entries are exported)",
        labels=["source"],
    )
    for s in statuses:
        if s.up is not None:
            up.add_metric([s.source], 1.0 if s.up else 0.0)
        if s.lock_held is not None:
            held.add_metric([s.source], 1.0 if s.lock_held else 0.0)
        if s.lock_refreshed_at is not None:
            refreshed.add_metric([s.source], s.lock_refreshed_at)
        entries.add_metric([s.source], float(s.total))
    yield from (up, held, refreshed, entries)


def _entries(rows: list[EntryView]) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "celery_beat_entry_info",
        "Always 1: the entry's schedule as text, its kind and queue",
        labels=[*_ENTRY, "kind", "schedule", "queue"],
    )
    for r in rows:
        info.add_metric(
            [r.source, r.name, r.task, r.kind, r.entry.schedule.text, r.entry.queue or ""], 1.0
        )
    yield info
    for metric, help_text, value in _PER_ENTRY:
        family = GaugeMetricFamily(metric, help_text, labels=_ENTRY)
        for r in rows:
            v = value(r)
            if v is not None:
                family.add_metric([r.source, r.name, r.task], v)
        yield family


def _health(views: list[SourceView]) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "celery_exporter_beat_source_up",
        "1 when the last read of the schedule source worked",
        labels=["source"],
    )
    last = GaugeMetricFamily(
        "celery_exporter_beat_last_read_timestamp_seconds",
        "When the schedule source was last read successfully, Unix seconds",
        labels=["source"],
    )
    reads = CounterMetricFamily(
        "celery_exporter_beat_reads", "Successful reads of the schedule source", labels=["source"]
    )
    errors = CounterMetricFamily(
        "celery_exporter_beat_read_errors",
        "Failed reads of the schedule source (store unreachable or timed out)",
        labels=["source"],
    )
    skipped = CounterMetricFamily(
        "celery_exporter_beat_records_skipped",
        "Schedule records not used, by reason (bad_json, bad_text, wrong_type, missing_field, "
        "bad_schedule, too_large; max_entries: past --beat-max-entries, counted per read)",
        labels=["source", "reason"],
    )
    for v in views:
        up.add_metric([v.source], 1.0 if v.up else 0.0)
        if v.last_ok is not None:
            last.add_metric([v.source], v.last_ok)
        reads.add_metric([v.source], float(v.reads))
        errors.add_metric([v.source], float(v.errors))
        for reason, n in sorted(v.skipped.items()):
            skipped.add_metric([v.source, reason], float(n))
    yield from (up, last, reads, errors, skipped)
