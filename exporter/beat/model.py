"""Plain data of a beat schedule: schedules, entries and one read of a schedule source.

Every source (RedBeat, django-celery-beat, the schedule file) produces the same `BeatRead`;
what a source cannot know stays None (a file knows no last run; django stores no next due).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.beat.cron import Crontab
from exporter.beat.solar import Solar

KIND_INTERVAL = "interval"
KIND_CRONTAB = "crontab"
KIND_SOLAR = "solar"
KIND_CLOCKED = "clocked"
KIND_OTHER = "other"  # e.g. RedBeat's rrule: the scheduler's next due is used as is


@dataclass(frozen=True)
class Every:
    seconds: float

    @property
    def text(self) -> str:
        return f"every {self.seconds:g}s"


@dataclass(frozen=True)
class Clocked:
    at: float  # Unix seconds: runs once

    @property
    def text(self) -> str:
        return "once"


@dataclass(frozen=True)
class Opaque:
    """A schedule we do not compute (rrule): only the scheduler's next due is known."""

    kind: str
    text: str


Schedule = Every | Crontab | Clocked | Solar | Opaque


def kind_of(schedule: Schedule) -> str:
    if isinstance(schedule, Every):
        return KIND_INTERVAL
    if isinstance(schedule, Crontab):
        return KIND_CRONTAB
    if isinstance(schedule, Clocked):
        return KIND_CLOCKED
    if isinstance(schedule, Solar):
        return KIND_SOLAR
    return schedule.kind


@dataclass(frozen=True)
class BeatEntry:
    """One periodic task as its scheduler describes it."""

    name: str
    task: str
    schedule: Schedule
    enabled: bool = True
    next_due: float | None = None  # the scheduler's own next run time, if it stores one
    last_run_at: float | None = None  # when beat last sent it, from the scheduler
    # Never run: when its schedule starts counting (django-celery-beat: the row's last change)
    anchor: float | None = None
    total_run_count: int | None = None
    queue: str | None = None
    # Arguments are never shown or exported; their digest tells entries of one task apart.
    args_digest: str = ""


@dataclass(frozen=True)
class LockState:
    """RedBeat's lock as last read: held (key exists) and its remaining time to live."""

    held: bool
    ttl: float | None = None  # seconds


@dataclass(frozen=True)
class BeatRead:
    """What one read of a schedule source found."""

    source: str  # redbeat | django | file
    at: float  # exporter clock, when read
    entries: tuple[BeatEntry, ...] = ()
    lock: LockState | None = None
    total: int = 0  # entries the store holds (may exceed `entries` past --beat-max-entries)
    # records not used, by reason (bad_json, wrong_type, missing_field, ...)
    skipped: dict[str, int] = field(default_factory=dict)
