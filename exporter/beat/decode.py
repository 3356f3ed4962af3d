"""The total decoder of schedule records: stored bytes or rows in, a `BeatEntry` or a reason out.

Nothing here raises on any input: a record that is not UTF-8, not JSON, nested too deep, too
large or of the wrong shape is skipped with a reason the source counts
(`celery_exporter_beat_records_skipped_total{reason}`). Names become clean one-line text;
arguments are never kept, only a digest that tells entries of one task apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from typing import Any

import orjson

from exporter.beat import cron
from exporter.beat.model import BeatEntry, Clocked, Every, Opaque, Schedule

MAX_RECORD = 256 * 1024  # bytes of one definition/meta; RedBeat's are a few hundred
MAX_NAME = 200
BAD_TEXT = "bad_text"
BAD_JSON = "bad_json"
TOO_LARGE = "too_large"
WRONG_TYPE = "wrong_type"
MISSING = "missing_field"
BAD_SCHEDULE = "bad_schedule"
_MIN_TS, _MAX_TS = 0.0, 32503680000.0  # 1970 .. 3000


class Skip(Exception):
    """A record not used; `reason` is the label it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def clean(value: Any, limit: int = MAX_NAME) -> str | None:
    """One line of printable text, at most `limit` characters, or None."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    text = "".join(c if c.isprintable() else " " for c in value[: limit * 2]).strip()
    return text[:limit] or None


def load_json(raw: Any) -> Any:
    """bytes/str -> JSON value; Skip on anything else (orjson refuses nesting past 1024)."""
    if raw is None:
        raise Skip(MISSING)
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise Skip(WRONG_TYPE)
    if len(raw) > MAX_RECORD:
        raise Skip(TOO_LARGE)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise Skip(BAD_TEXT) from None
        raise Skip(BAD_JSON) from None


def timestamp(value: Any) -> float | None:
    """A number of seconds, RedBeat's datetime object, or an aware datetime -> Unix seconds."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            ts = float(value)
        elif isinstance(value, dt.datetime):
            aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
            ts = aware.timestamp()
        elif isinstance(value, dict) and value.get("__type__") == "datetime":
            parts = {k: value.get(k, 0) for k in ("hour", "minute", "second", "microsecond")}
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in parts.values()):
                return None
            zone = value.get("timezone", "UTC")
            tz: dt.tzinfo
            if isinstance(zone, int | float) and not isinstance(zone, bool):
                tz = dt.timezone(dt.timedelta(seconds=float(zone)))  # RedBeat: offset seconds
            elif isinstance(zone, str):
                tz = cron.zone(zone)
            else:
                return None
            ts = dt.datetime(
                int(value["year"]), int(value["month"]), int(value["day"]), tzinfo=tz, **parts
            ).timestamp()
        else:
            return None
    except (KeyError, TypeError, ValueError, OverflowError, cron.CronError):
        return None
    if not math.isfinite(ts) or not _MIN_TS <= ts <= _MAX_TS:
        return None
    return ts


def _field(value: Any) -> str:
    if value is None:
        return "*"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(v) for v in sorted(value, key=str)[:100])
    if isinstance(value, int | str) and not isinstance(value, bool):
        return str(value)[:200]
    raise Skip(BAD_SCHEDULE)


def redbeat_schedule(value: Any, tz: dt.tzinfo) -> Schedule:
    """RedBeat's encoded schedule (interval, crontab, rrule) -> Schedule; Skip otherwise."""
    if not isinstance(value, dict):
        raise Skip(WRONG_TYPE)
    kind = value.get("__type__")
    if kind == "interval":
        every = value.get("every")
        if isinstance(every, bool) or not isinstance(every, int | float):
            raise Skip(BAD_SCHEDULE)
        if not 0 < every < 1e10:
            raise Skip(BAD_SCHEDULE)
        return Every(float(every))
    if kind == "crontab":
        try:
            return cron.parse(
                _field(value.get("minute")),
                _field(value.get("hour")),
                _field(value.get("day_of_month")),
                _field(value.get("month_of_year")),
                _field(value.get("day_of_week")),
                tz=tz,
            )
        except cron.CronError:
            raise Skip(BAD_SCHEDULE) from None
    if kind == "rrule":
        return Opaque("other", "rrule")
    raise Skip(BAD_SCHEDULE)


def digest(args: Any, kwargs: Any) -> str:
    """A short digest of an entry's arguments: equal arguments, equal digest."""
    try:
        raw = orjson.dumps([args, kwargs], option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        raw = repr(type(args)).encode()
    return hashlib.sha256(raw).hexdigest()[:12]


def redbeat_entry(
    key_name: str, definition: Any, meta: Any, score: Any, tz: dt.tzinfo
) -> BeatEntry:
    """One RedBeat hash (its `definition` and `meta` fields) and its schedule score."""
    d = load_json(definition)
    if not isinstance(d, dict):
        raise Skip(WRONG_TYPE)
    name = clean(d.get("name")) or clean(key_name)
    task = clean(d.get("task"))
    if name is None or task is None:
        raise Skip(MISSING)
    schedule = redbeat_schedule(d.get("schedule"), tz)
    enabled = d.get("enabled", True)
    last_run_at = None
    runs = None
    if meta is not None:
        try:
            m = load_json(meta)
        except Skip:
            m = None  # a broken meta loses the last run, not the entry
        if isinstance(m, dict):
            last_run_at = timestamp(m.get("last_run_at"))
            count = m.get("total_run_count")
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                runs = count
    options = d.get("options")
    queue = clean(options.get("queue")) if isinstance(options, dict) else None
    due = timestamp(score)
    return BeatEntry(
        name=name,
        task=task,
        schedule=schedule,
        enabled=enabled is not False,
        next_due=due,
        last_run_at=last_run_at,
        total_run_count=runs,
        queue=queue,
        args_digest=digest(d.get("args"), d.get("kwargs")),
    )


def clocked(at: Any) -> Schedule:
    ts = timestamp(at)
    if ts is None:
        raise Skip(BAD_SCHEDULE)
    return Clocked(ts)
