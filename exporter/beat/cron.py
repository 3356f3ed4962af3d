"""Crontab expressions as Celery reads them, and their due times in a time zone (zoneinfo).

Grammar and meaning follow `celery.schedules.crontab`: fields `minute hour day_of_month
month_of_year day_of_week` (the order of `crontab.from_string`), each `*`, `*/n`, `a-b`,
`a-b/n` (a range may wrap), comma lists, and three-letter day and month names; Sunday is 0.
Unlike Vixie cron, a day must match BOTH day_of_month and day_of_week (Celery's rule).

Daylight saving time, decided here because Celery's own arithmetic is not DST-exact: a local
time that does not exist (the hour skipped in spring) is not a due time; a local time that
occurs twice (the hour repeated in autumn) is due once, at its first occurrence.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# A crontab that matches no day within this many years never runs (e.g. "0 0 31 2 *").
_HORIZON_DAYS = 366 * 8 + 2


class CronError(ValueError):
    """A crontab expression or time zone that cannot be used, in one line."""


def _number(token: str, low: int, size: int, names: tuple[str, ...]) -> int:
    word = token.strip().lower()
    if word[:3] in names and word.isalpha():
        return names.index(word[:3]) + (1 if low == 1 else 0)
    if not word.isdigit():
        raise CronError(f"{token!r} is not a number")
    value = int(word)
    if not low <= value < low + size:
        raise CronError(f"{value} is out of range {low}-{low + size - 1}")
    return value


def parse_field(spec: str, low: int, size: int, names: tuple[str, ...] = ()) -> frozenset[int]:
    """One field -> the set of values it allows; CronError when malformed."""
    out: set[int] = set()
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            raise CronError("empty list item")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            values = list(range(low, low + size))
        else:
            first, dash, last = base.partition("-")
            a = _number(first, low, size, names)
            if dash:
                b = _number(last, low, size, names)
                # A range may wrap around, as in Celery ("fri-mon").
                values = (
                    list(range(a, b + 1))
                    if b >= a
                    else list(range(a, low + size)) + list(range(low, b + 1))
                )
            else:
                values = [a]
        out.update(values[::step])
    return frozenset(out)


@dataclass(frozen=True)
class Crontab:
    """A parsed crontab in a time zone."""

    minute: frozenset[int]
    hour: frozenset[int]
    day_of_month: frozenset[int]
    month_of_year: frozenset[int]
    day_of_week: frozenset[int]
    tz: dt.tzinfo
    text: str  # as given: shown in the dashboard and the API

    def matches_day(self, day: dt.date) -> bool:
        return (
            day.month in self.month_of_year
            and day.day in self.day_of_month
            and day.isoweekday() % 7 in self.day_of_week
        )

    def next_after(self, ts: float) -> float | None:
        """The first due time strictly after `ts` (Unix seconds), or None if there is none."""
        local = dt.datetime.fromtimestamp(ts, self.tz)
        day = local.date()
        hours = sorted(self.hour)
        minutes = sorted(self.minute)
        for _ in range(_HORIZON_DAYS):
            if self.matches_day(day):
                for h in hours:
                    for m in minutes:
                        due = _instant(day, h, m, self.tz)
                        if due is not None and due > ts:
                            return due
            day += dt.timedelta(days=1)
        return None

    def due_times(self, start: float, end: float, cap: int) -> list[float]:
        """Due times in [start, end], at most `cap` of them (the first ones)."""
        out: list[float] = []
        t = self.next_after(start - 1e-6)
        while t is not None and t <= end and len(out) < cap:
            out.append(t)
            t = self.next_after(t)
        return out


def _instant(day: dt.date, hour: int, minute: int, tz: dt.tzinfo) -> float | None:
    """The Unix time of a local wall time, None when DST skips it (first one when repeated)."""
    naive = dt.datetime(day.year, day.month, day.day, hour, minute)
    aware = naive.replace(tzinfo=tz, fold=0)
    back = aware.astimezone(dt.timezone.utc).astimezone(tz).replace(tzinfo=None)
    if back != naive:
        return None
    return aware.timestamp()


def zone(name: str | None) -> dt.tzinfo:
    """A zoneinfo time zone by IANA name ("" or None: UTC); CronError when unknown."""
    if not name or name.upper() == "UTC":
        return dt.timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r}") from exc


def parse(
    minute: str = "*",
    hour: str = "*",
    day_of_month: str = "*",
    month_of_year: str = "*",
    day_of_week: str = "*",
    tz: dt.tzinfo = dt.timezone.utc,
) -> Crontab:
    fields = (minute, hour, day_of_month, month_of_year, day_of_week)
    text = " ".join(str(f).strip() for f in fields)
    try:
        parsed = Crontab(
            parse_field(minute, 0, 60),
            parse_field(hour, 0, 24),
            parse_field(day_of_month, 1, 31),
            parse_field(month_of_year, 1, 12, _MONTHS),
            parse_field(day_of_week, 0, 7, _DAYS),
            tz,
            text,
        )
    except CronError as exc:
        raise CronError(f"crontab {text!r}: {exc}") from None
    return parsed


def parse_expression(text: str, tz: dt.tzinfo = dt.timezone.utc) -> Crontab:
    """`"m h dom mon dow"`, the order of Celery's `crontab.from_string`."""
    parts = str(text).split()
    if len(parts) != 5:
        raise CronError(f"crontab {text!r} needs 5 fields (minute hour day month weekday)")
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    return parse(minute, hour, day_of_month, month_of_year, day_of_week, tz=tz)
