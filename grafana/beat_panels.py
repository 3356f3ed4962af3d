"""The "Periodic tasks" row of the overview dashboard: beat's liveness, one table line per beat
entry (schedule, last run, last success, next due, state) and lateness over time. Kept apart
from generate.py so the beat panels read as one piece."""

from __future__ import annotations

from typing import Any

from celery_panels import Board, sel

_BY = "source, entry, task"


# (expression, column) of the entry table; timestamps in ms for Grafana's dateTime unit
def _table() -> tuple[tuple[str, str], ...]:
    SEL = sel()  # read when the dashboard is built, after --selector
    return (
    (f"max by ({_BY}, schedule) (celery_beat_entry_info{{{SEL}}})", "schedule"),
    (f"max by ({_BY}) (celery_beat_entry_last_dispatched_timestamp_seconds{{{SEL}}}) * 1000",
     "last run"),
    (f"max by ({_BY}) (celery_beat_entry_last_success_timestamp_seconds{{{SEL}}}) * 1000",
     "last success"),
    (f"max by ({_BY}) (celery_beat_entry_last_failure_timestamp_seconds{{{SEL}}}) * 1000",
     "last failure"),
    (f"max by ({_BY}) (celery_beat_entry_next_due_timestamp_seconds{{{SEL}}}) * 1000",
     "next due"),
    (f"max by ({_BY}) (celery_beat_entry_overdue_seconds{{{SEL}}})", "overdue"),
    (f"max by ({_BY}) (celery_beat_entry_missed_runs{{{SEL}}})", "missed runs"),
    (f"max by ({_BY}) (celery_beat_entry_enabled{{{SEL}}})", "enabled"),
    )  # fmt: skip


def _table_overrides() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, (_expr, column) in enumerate(_table()):
        unit = "dateTimeAsIso" if column.startswith(("last", "next")) else (
            "s" if column == "overdue" else "short")  # fmt: skip
        out.append({"matcher": {"id": "byName", "options": f"Value #{chr(65 + i)}"},
                    "properties": [{"id": "displayName", "value": column},
                                   {"id": "unit", "value": unit}]})  # fmt: skip
    return out


def beat_row(b: Board) -> None:
    SEL = sel()
    b.row("Periodic tasks (beat)")
    b.add("stat", "Beat up", "1: beat is alive (RedBeat's lock held and refreshed; otherwise "
          "an entry sent within its interval). Absent while the exporter cannot tell.",
          [(f"min by (source) (celery_beat_up{{{SEL}}})", "{{source}}")], w=4,
          thresholds=[(1, "green")])  # fmt: skip
    b.add("table", "Beat entries", "One line per beat entry: its schedule, when beat last sent "
          "it, its task's last success and failure (shared by entries of one task name), "
          "when it is next due, how late it is and the runs it missed.",
          [(expr, column) for expr, column in _table()], w=20, h=8,
          transformations=[{"id": "merge", "options": {}},
                           {"id": "organize", "options": {"excludeByName": {"Time": True}}}],
          )  # fmt: skip
    table = b.panels[-1]
    for target in table["targets"]:
        target.update({"range": False, "instant": True, "format": "table"})
    table["fieldConfig"]["overrides"] = _table_overrides()
    b.add("timeseries", "Overdue entries", "Seconds past each entry's next due time without "
          "a dispatch (0 when on time).",
          [(f"max by (entry) (celery_beat_entry_overdue_seconds{{{SEL}}})", "{{entry}}")],
          "s", w=12)  # fmt: skip
    b.add("timeseries", "Missed runs", "Due times that passed more than --beat-grace ago "
          "without a dispatch, per entry; and schedule reads failing per source.",
          [(f"max by (entry) (celery_beat_entry_missed_runs{{{SEL}}})", "{{entry}}"),
           (f"min by (source) (celery_exporter_beat_source_up{{{SEL}}})",
            "schedule readable {{source}}")], w=12)  # fmt: skip
