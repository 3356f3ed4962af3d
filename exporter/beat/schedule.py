"""Due-time arithmetic over a `Schedule`: the next due time, the current period, and how many
due times fell in a span (missed runs). Pure functions of their arguments: time comes in as
numbers from the injectable clock, never from the system.
"""

from __future__ import annotations

import math

from exporter.beat.cron import Crontab
from exporter.beat.model import Clocked, Every, Schedule
from exporter.beat.solar import Solar

# Missed runs are counted up to this many: a 1-second entry dead for a day is "1000+", and a
# crontab is stepped through due by due, so the count must be bounded.
MAX_MISSED = 1000
# Solar events are found one by one (a millisecond each): past this many, the rest of a long
# outage is counted as one a day.
SOLAR_EXACT = 40


def next_after(schedule: Schedule, ts: float, anchor: float | None = None) -> float | None:
    """The first due time strictly after `ts`.

    An interval has no phase of its own: it is due `seconds` after its last run (`anchor`),
    as Celery's `schedule.remaining_estimate` computes it; without an anchor, at `ts + every`.
    """
    if isinstance(schedule, Every):
        if anchor is None:
            return ts + schedule.seconds
        if anchor + schedule.seconds > ts:
            return anchor + schedule.seconds
        steps = math.floor((ts - anchor) / schedule.seconds) + 1
        return anchor + steps * schedule.seconds
    if isinstance(schedule, Crontab | Solar):
        return schedule.next_after(ts)
    if isinstance(schedule, Clocked):
        return schedule.at if schedule.at > ts else None
    return None


def period(schedule: Schedule, at: float | None) -> float | None:
    """Seconds between the due time `at` and the one after it (the entry's interval now)."""
    if isinstance(schedule, Every):
        return schedule.seconds
    if isinstance(schedule, Crontab | Solar) and at is not None:
        following = schedule.next_after(at)
        return None if following is None else following - at
    return None


def missed(schedule: Schedule, due: float, until: float) -> int:
    """Runs that came due by `until` and were not sent: the scheduler's due time `due` itself,
    and the schedule's due times after it (capped at MAX_MISSED)."""
    if until < due:
        return 0
    if isinstance(schedule, Every):
        return min(MAX_MISSED, math.floor((until - due) / schedule.seconds) + 1)
    if isinstance(schedule, Crontab):
        later = schedule.next_after(due)
        if later is None or later > until:
            return 1
        return 1 + len(schedule.due_times(later, until, MAX_MISSED - 1))
    if isinstance(schedule, Solar):
        count, at = 1, due
        while count < SOLAR_EXACT:
            at = schedule.next_after(at)
            if at > until:
                return count
            count += 1
        return min(MAX_MISSED, count + math.floor((until - at) / 86400.0))
    return 1
