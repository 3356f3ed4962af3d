"""django-celery-beat read from a real PostgreSQL: a throwaway database created (with the
tables django-celery-beat's migrations create, tests/fixtures) and dropped by the test; interval,
crontab (own time zone), solar and clocked entries, broken rows skipped and counted, a
read-only transaction, and an unreachable database reported without stopping the daemon."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.beat.cron import Crontab
from exporter.beat.django import DjangoReader
from exporter.beat.model import Clocked, Every
from exporter.beat.runspec import NotRunnable
from exporter.beat.solar import SETTLE, Solar, next_event
from exporter.beat.source import BeatSource, board_for
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.state import State
from tests.support.common import free_port, wait_for

psycopg = pytest.importorskip("psycopg")
pymysql = pytest.importorskip("pymysql")
pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
UTC = dt.timezone.utc


class MariaDB:
    """A private mariadbd on a free loopback port in a temporary data directory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="ce-mariadb-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        data = os.path.join(self.dir, "data")
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}",
                        "--skip-test-db", "--auth-root-authentication-method=normal"],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={data}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.dir}/sock", "--skip-grant-tables",
             f"--pid-file={self.dir}/pid", "--skip-log-bin", f"--user={getpass.getuser()}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: self.connect().close() or True, 60, 0.1, "mariadbd to accept")

    def connect(self, db: str | None = None) -> Any:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", database=db,
                               autocommit=True, connect_timeout=2)  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDB]:
    if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
        pytest.skip("no mariadbd on this machine to start a private MariaDB")
    server = MariaDB()
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Db:
    """A throwaway django-celery-beat database: its URL and a writable admin connection."""

    def __init__(self, kind: str, url: str, conn: Any) -> None:
        self.kind, self.url, self.conn = kind, url, conn

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)


def _postgres() -> Iterator[Db]:
    try:
        admin = psycopg.connect(ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 to create a throwaway database: {exc}")
    name = f"ce_beat_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute((FIXTURES / "django_celery_beat_postgresql.sql").read_text())
            yield Db("postgresql", url, conn)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _mysql(server: MariaDB) -> Iterator[Db]:
    name = f"ce_beat_{uuid.uuid4().hex[:10]}"
    admin = server.connect()
    admin.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    conn = server.connect(name)
    try:
        schema = (FIXTURES / "django_celery_beat_mysql.sql").read_text()
        for statement in schema.split(";"):
            if "CREATE" in statement:
                conn.cursor().execute(statement)
        # a user and password in the URL, as an operator would give them
        yield Db("mysql", f"mysql://reader:p%40ss@127.0.0.1:{server.port}/{name}", conn)
    finally:
        conn.close()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.fixture(params=["postgresql", "mysql"])
def beat_db(request: pytest.FixtureRequest) -> Iterator[Db]:
    if request.param == "postgresql":
        yield from _postgres()
    else:
        yield from _mysql(request.getfixturevalue("mariadb"))


NOW = dt.datetime(2026, 3, 28, 12, 0, tzinfo=UTC)


def seed(db: Db) -> None:
    c = db
    if True:
        c.execute("INSERT INTO django_celery_beat_intervalschedule (id, every, period) VALUES "
                  "(1, 30, 'seconds'), (2, 2, 'hours'), (3, 5, 'fortnights')")  # fmt: skip
        c.execute(
            "INSERT INTO django_celery_beat_crontabschedule (id, minute, hour, day_of_week, "
            "day_of_month, month_of_year, timezone) VALUES "
            "(1, '30', '2', '*', '*', '*', 'Europe/Berlin'), (2, '0', '4', '*', '*', '*', 'UTC'),"
            "(3, '0', '4', '*', '*', '*', 'Nowhere/Land'), (4, '99', '*', '*', '*', '*', 'UTC')"
        )
        c.execute("INSERT INTO django_celery_beat_solarschedule (id, event, latitude, longitude)"
                  " VALUES (1, 'sunrise', 52.5, 13.4)")  # fmt: skip
        c.execute("INSERT INTO django_celery_beat_clockedschedule (id, clocked_time) VALUES "
                  "(1, %s)", (NOW + dt.timedelta(hours=1),))  # fmt: skip
        rows = [
            # name, task, enabled, one_off, last_run_at, runs, interval, crontab, solar, clocked
            ("ping", "app.ping", True, False, NOW - dt.timedelta(seconds=100), 7, 1, None, None,
             None),
            ("nightly", "app.nightly", True, False, NOW - dt.timedelta(hours=12), 3, None, 1,
             None, None),
            ("report-a", "app.report", True, False, None, 0, None, 2, None, None),
            ("report-b", "app.report", False, False, None, 0, 2, None, None, None),
            ("dawn", "app.dawn", True, False, None, 0, None, None, 1, None),
            ("once", "app.once", True, True, None, 0, None, None, None, 1),
            ("bad-zone", "app.x", True, False, None, 0, None, 3, None, None),
            ("bad-cron", "app.x", True, False, None, 0, None, 4, None, None),
            ("bad-period", "app.x", True, False, None, 0, 3, None, None, None),
        ]  # fmt: skip
        for i, r in enumerate(rows, 1):
            c.execute(
                "INSERT INTO django_celery_beat_periodictask (id, name, task, args, kwargs, "
                "enabled, one_off, last_run_at, total_run_count, interval_id, crontab_id, "
                "solar_id, clocked_id, date_changed, description, headers) VALUES "
                "(%s, %s, %s, %s, '{}', %s, %s, %s, %s, %s, %s, %s, %s, %s, '', '{}')",
                (i, r[0], r[1], f"[{i}]", *r[2:], NOW - dt.timedelta(days=1)),
            )


def test_reads_every_schedule_kind_read_only(beat_db: Db) -> None:
    seed(beat_db)
    reader = DjangoReader(beat_db.url)
    read = reader.read(NOW.timestamp(), 500)
    try:
        assert read.total == 9
        assert read.skipped == {"bad_schedule": 3}
        by = {e.name: e for e in read.entries}
        assert set(by) == {"ping", "nightly", "report-a", "report-b", "dawn", "once"}
        assert by["ping"].schedule == Every(30.0) and by["ping"].total_run_count == 7
        assert by["ping"].last_run_at == (NOW - dt.timedelta(seconds=100)).timestamp()
        nightly = by["nightly"].schedule
        assert isinstance(nightly, Crontab) and str(nightly.tz) == "Europe/Berlin"
        assert by["report-b"].schedule == Every(7200.0) and not by["report-b"].enabled
        assert by["report-a"].args_digest != by["report-b"].args_digest  # same task, own args
        assert by["report-a"].anchor == (NOW - dt.timedelta(days=1)).timestamp()
        assert by["dawn"].schedule == Solar("sunrise", 52.5, 13.4)  # DECIMAL columns
        assert by["once"].schedule == Clocked((NOW + dt.timedelta(hours=1)).timestamp())
        # the reader's transactions are read-only: a write in one is refused by the server
        with reader._conn.cursor() as cur:
            if beat_db.kind == "postgresql":
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    cur.execute("DELETE FROM django_celery_beat_periodictask")
            else:
                cur.execute("START TRANSACTION READ ONLY")
                with pytest.raises(pymysql.err.OperationalError, match="READ ONLY"):
                    cur.execute("DELETE FROM django_celery_beat_periodictask")
        reader._conn.rollback()
        reader.read(NOW.timestamp(), 500)  # and it reads on after that
        # run-now reads one entry's task, arguments and options, with the header beat adds
        spec = reader.run_spec("nightly")
        assert (spec.task, spec.args, spec.kwargs) == ("app.nightly", [2], {})
        assert spec.options == {"headers": {"periodic_task_name": "nightly"}}
        with pytest.raises(NotRunnable, match="no longer in django-celery-beat"):
            reader.run_spec("nope")
    finally:
        reader.close()


def test_metrics_from_the_database(beat_db: Db) -> None:
    seed(beat_db)
    clock = FakeClock(NOW.timestamp())
    state = State(Config(beat_grace=10.0), clock)
    source = BeatSource(state, DjangoReader(beat_db.url))
    source.run()
    try:
        (view,) = board_for(state).views()
        assert view.up and view.reads == 1
        from exporter.beat.join import join

        status = join(view, {}, clock.time(), 10.0, 300.0)
        assert status is not None
        rows = {r.name: r for r in status.entries}
        # every 30 s, last sent 100 s ago: due 70 s ago; runs at -70, -40, -10 missed
        assert rows["ping"].overdue == 70.0 and rows["ping"].missed == 3
        # 02:30 Berlin on 2026-03-28 (CET) = 01:30 UTC, after its last run at 00:00 UTC: late
        assert rows["nightly"].next_due == dt.datetime(2026, 3, 28, 1, 30, tzinfo=UTC).timestamp()
        assert rows["nightly"].missed == 1
        # the next one skips the 29th, whose 02:30 does not exist (DST): the 30th, 00:30 UTC
        after = rows["nightly"].entry.schedule.next_after(rows["nightly"].next_due)  # type: ignore[union-attr]
        assert after == dt.datetime(2026, 3, 30, 0, 30, tzinfo=UTC).timestamp()
        # never run: counts from date_changed (yesterday noon): next 04:00 UTC today
        assert rows["report-a"].next_due == dt.datetime(2026, 3, 28, 4, tzinfo=UTC).timestamp()
        assert rows["report-a"].shared_task and rows["report-b"].shared_task
        assert rows["once"].next_due == (NOW + dt.timedelta(hours=1)).timestamp()
        # never run: the first sunrise in Berlin after its row changed (yesterday noon):
        # today 05:5x CET; spring days grow, so the next sunrise comes a little sooner
        yesterday = (NOW - dt.timedelta(days=1)).timestamp()
        dawn = rows["dawn"]
        assert dawn.next_due == next_event("sunrise", 52.5, 13.4, yesterday + SETTLE)
        assert dt.datetime.fromtimestamp(dawn.next_due, UTC).strftime("%m-%d %H") == "03-28 04"
        assert dawn.interval is not None and 86000 < dawn.interval < 86400
        assert dawn.missed == 1 and dawn.kind == "solar"
        # ping's run due 70 s ago was missed and nothing was sent since: beat is down
        assert status.up is False
    finally:
        source.stop()


def test_unreachable_database_is_reported_and_retried() -> None:
    clock = FakeClock(NOW.timestamp())
    state = State(Config(), clock)
    source = BeatSource(state, DjangoReader(f"postgresql://postgres@127.0.0.1:{free_port()}/x"))
    source.run()
    source.run()
    (view,) = board_for(state).views()
    assert not view.up and view.errors == 2 and view.read is None
