"""django-celery-beat's schedule, read-only, from its database (PostgreSQL or MySQL/MariaDB).

One `SELECT` per read, in a read-only transaction that is rolled back: the
`django_celery_beat_periodictask` rows (at most --beat-max-entries, by id) LEFT JOINed with
their interval, crontab, solar and clocked schedules, plus a `count(*)`. Task arguments
never leave the database: the query returns only an MD5 of them, which tells entries of one
task apart. Drivers: psycopg 3 (PostgreSQL), PyMySQL (MySQL, MariaDB), imported only when
configured. Schema: django-celery-beat 2.x migrations (checked against 0019).

Beat's own rules are mirrored where they change when an entry is due: a never-run entry counts
from its row's `date_changed`, waits for `start_time`, an expired entry and a one-off that ran
are disabled. Naive times (MySQL `datetime`, or Django's USE_TZ=False) are taken as UTC.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import replace
from typing import Any
from urllib.parse import unquote, urlsplit

from exporter.beat import cron, decode, runspec, solar
from exporter.beat.model import BeatEntry, BeatRead, Every, Schedule
from exporter.beat.runspec import RunSpec

QUERY = """
SELECT t.name, t.task, t.enabled, t.one_off, t.last_run_at, t.total_run_count, t.queue,
       t.start_time, t.expires, t.date_changed, MD5(CONCAT(t.args, '|', t.kwargs)),
       i.every, i.period,
       c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week, c.timezone,
       s.event, k.clocked_time, s.latitude, s.longitude
FROM django_celery_beat_periodictask t
LEFT JOIN django_celery_beat_intervalschedule i ON i.id = t.interval_id
LEFT JOIN django_celery_beat_crontabschedule c ON c.id = t.crontab_id
LEFT JOIN django_celery_beat_solarschedule s ON s.id = t.solar_id
LEFT JOIN django_celery_beat_clockedschedule k ON k.id = t.clocked_id
ORDER BY t.id
LIMIT %s
"""
COUNT = "SELECT count(*) FROM django_celery_beat_periodictask"
RUN_SPEC = """
SELECT task, args, kwargs, queue, exchange, routing_key, priority, headers
FROM django_celery_beat_periodictask WHERE name = %s
"""
PERIODS = {"days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0,
           "microseconds": 1e-6}  # fmt: skip
STATEMENT_TIMEOUT_MS = 10_000


def kind_of_url(url: str) -> str:
    scheme = urlsplit(url).scheme.lower().split("+")[0]
    return "postgresql" if scheme in ("postgresql", "postgres") else "mysql"


class DjangoReader:
    source = "django"

    def __init__(self, url: str, tz: dt.tzinfo = dt.timezone.utc) -> None:
        self.url = url
        self.kind = kind_of_url(url)
        self.tz = tz
        self._conn: Any = None

    def _connect(self) -> Any:
        if self.kind == "postgresql":
            import psycopg

            conn = psycopg.connect(self.url, connect_timeout=5, autocommit=False)
            conn.read_only = True  # every transaction starts READ ONLY
            return conn
        import pymysql

        parts = urlsplit(self.url)
        return pymysql.connect(
            host=parts.hostname or "localhost",
            port=parts.port or 3306,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            database=parts.path.lstrip("/") or None,
            connect_timeout=5,
            read_timeout=STATEMENT_TIMEOUT_MS / 1000,
            charset="utf8mb4",
            autocommit=False,
        )

    def read(self, now: float, max_entries: int) -> BeatRead:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        try:
            with conn.cursor() as cur:
                if self.kind == "postgresql":
                    cur.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                else:
                    cur.execute("START TRANSACTION READ ONLY")
                cur.execute(COUNT)
                (total,) = cur.fetchone()
                cur.execute(QUERY, (max_entries,))
                rows = cur.fetchall()
        finally:
            conn.rollback()  # nothing was written; end the read-only transaction
        skipped: Counter[str] = Counter()
        entries: list[BeatEntry] = []
        for row in rows:
            try:
                entries.append(row_entry(row, now, self.tz))
            except decode.Skip as skip:
                skipped[skip.reason] += 1
        return BeatRead("django", now, tuple(entries), total=int(total), skipped=dict(skipped))

    def run_spec(self, name: str) -> RunSpec:
        """The entry's task, arguments and options, read now (for a fix-it "run now" plan),
        on a connection of its own (the read job owns the other). Headers gain
        `periodic_task_name`, as django-celery-beat's scheduler adds it."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                if self.kind == "postgresql":
                    cur.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                else:
                    cur.execute("START TRANSACTION READ ONLY")
                cur.execute(RUN_SPEC, (name,))
                row = cur.fetchone()
            conn.rollback()
        finally:
            conn.close()
        if row is None:
            raise runspec.NotRunnable("its entry is no longer in django-celery-beat's table")
        spec = runspec.django_spec(tuple(row))
        headers = {**spec.options.get("headers", {}), "periodic_task_name": name}
        return replace(spec, options={**spec.options, "headers": headers})

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection may fail to close; it is dropped either way
                return


def _ts(value: Any) -> float | None:
    return decode.timestamp(value) if isinstance(value, dt.datetime) else None


def _solar(event: Any, lat: Any, lon: Any) -> Schedule:
    """django-celery-beat's solar row (latitude, longitude are DECIMAL) -> Solar."""
    name = decode.clean(event)
    try:
        la, lo = float(lat), float(lon)
    except (TypeError, ValueError, OverflowError):
        raise decode.Skip(decode.BAD_SCHEDULE) from None
    if name is None or not solar.valid(name, la, lo):
        raise decode.Skip(decode.BAD_SCHEDULE)
    return solar.Solar(name, la, lo)


def row_schedule(row: tuple[Any, ...], default_tz: dt.tzinfo) -> Schedule:
    every, period = row[11], row[12]
    if every is not None:
        unit = PERIODS.get(period) if isinstance(period, str) else None
        if unit is None or isinstance(every, bool) or not isinstance(every, int) or every <= 0:
            raise decode.Skip(decode.BAD_SCHEDULE)
        return Every(every * unit)
    if row[13] is not None:
        fields = [decode.clean(v) for v in row[13:18]]
        if any(f is None for f in fields):
            raise decode.Skip(decode.BAD_SCHEDULE)
        try:
            tz = cron.zone(decode.clean(row[18])) if row[18] else default_tz
            minute, hour, dom, month, dow = (f or "*" for f in fields)
            return cron.parse(minute, hour, dom, month, dow, tz=tz)
        except cron.CronError:
            raise decode.Skip(decode.BAD_SCHEDULE) from None
    if row[19] is not None:
        return _solar(row[19], row[21], row[22])
    if row[20] is not None:
        return decode.clocked(_ts(row[20]))
    raise decode.Skip(decode.BAD_SCHEDULE)  # a row with no schedule: beat disables it


def row_entry(row: tuple[Any, ...], now: float, default_tz: dt.tzinfo) -> BeatEntry:
    """One joined row -> BeatEntry; decode.Skip when it cannot be used. Never raises else."""
    if not isinstance(row, tuple | list) or len(row) != 23:
        raise decode.Skip(decode.WRONG_TYPE)
    name, task = decode.clean(row[0]), decode.clean(row[1])
    if name is None or task is None:
        raise decode.Skip(decode.MISSING)
    schedule = row_schedule(row, default_tz)
    last_run = _ts(row[4])
    runs = row[5] if isinstance(row[5], int) and not isinstance(row[5], bool) else None
    start, expires = _ts(row[7]), _ts(row[8])
    enabled = bool(row[2]) and not (expires is not None and expires <= now)
    if row[3] and runs:
        enabled = False  # a one-off that ran is disabled by beat
    next_due = None
    if start is not None and start > now and last_run is None:
        next_due = start
    return BeatEntry(
        name=name,
        task=task,
        schedule=schedule,
        enabled=enabled,
        next_due=next_due,
        last_run_at=last_run,
        total_run_count=runs,
        queue=decode.clean(row[6]),
        args_digest=(decode.clean(row[10]) or "")[:12],
        anchor=_ts(row[9]),
    )
