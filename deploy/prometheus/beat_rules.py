"""The Celery beat alerts of `celery-rules.yml` (used by generate.py, kept apart so the beat
rules read as one piece): beat down, an entry missed, an entry dispatched but not succeeding.

Every series compared here carries the same labels (job, instance, source, entry, task), so
the comparisons match one-to-one without `on (...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

VARIABLES: dict[str, tuple[Any, str]] = {
    "beat_down_for": ("3m", "How long beat may be down (RedBeat lock gone or stale; or no "
                      "entry dispatched within its interval)"),
    "beat_missed_factor": (0.5, "An entry is missed when overdue by more than this share of "
                           "its interval..."),
    "beat_missed_min_seconds": (120, "...and by more than this many seconds"),
    "beat_missed_for": ("1m", "How long an entry must stay missed before alerting"),
    "beat_failing_dispatches": (3, "An entry whose last success is older than this many of "
                                "its dispatches is not succeeding"),
    "beat_failing_for": ("10m", "How long an entry may go on not succeeding"),
}  # fmt: skip


def _num(value: float) -> str:
    return f"{value:.6g}"


def alerts(
    v: dict[str, Any], alert: Callable[..., dict[str, Any]], sel: Callable[[str], str]
) -> list[dict[str, Any]]:
    """`sel(metric)` is the metric with the rules' selector (generate.py), as every rule has."""
    up, overdue = sel("celery_beat_up"), sel("celery_beat_entry_overdue_seconds")
    interval = sel("celery_beat_entry_interval_seconds")
    dispatched = sel("celery_beat_entry_last_dispatched_timestamp_seconds")
    success = sel("celery_beat_entry_last_success_timestamp_seconds")
    factor = _num(float(v["beat_missed_factor"]))
    least = _num(float(v["beat_missed_min_seconds"]))
    # N dispatches after the last success: the last dispatch is about N-1 intervals after the
    # first failing one, which came about one run time after the success (< half an interval).
    span = _num(float(v["beat_failing_dispatches"]) - 0.5)
    return [
        alert(
            "CeleryBeatDown",
            f"{up} == 0\n",
            v["beat_down_for"],
            "critical",
            "Celery beat is down: periodic tasks are not being sent",
            "Beat ({{ $labels.source }} schedule, job {{ $labels.job }}) is not running: "
            "RedBeat's lock is gone or no longer refreshed, or no entry was sent within its "
            "interval.",
            v,
        ),
        alert(
            "CeleryBeatEntryMissed",
            f"{overdue}\n"
            f"  > clamp_min({interval} * {factor}, {least})\n"
            "or\n"
            f"{overdue} > {least}\n"
            f"  unless {interval}\n",
            v["beat_missed_for"],
            "warning",
            "A periodic task was not sent when due",
            "Beat entry {{ $labels.entry }} (task {{ $labels.task }}, job {{ $labels.job }}) "
            "is {{ $value | humanizeDuration }} overdue.",
            v,
        ),
        alert(
            "CeleryBeatEntryNotSucceeding",
            f"{dispatched}\n"
            f"  - {success}\n"
            f"  > {span} * {interval}\n"
            "or\n"
            f"{sel('celery_beat_entry_last_failure_timestamp_seconds')}\n"
            f"  >= {dispatched}\n"
            f"  unless {success}\n",
            v["beat_failing_for"],
            "warning",
            "A periodic task is sent but does not succeed",
            "Beat entry {{ $labels.entry }} (task {{ $labels.task }}, job {{ $labels.job }}) "
            f"has not succeeded in its last {int(v['beat_failing_dispatches'])} runs (or ever, "
            "as far as the exporter knows, and its last run failed).",
            v,
        ),
    ]
