"""Solar schedules: the next sunrise, sunset, noon, dawn or dusk, computed without ephem, agree
with Celery's own `solar` schedule (which asks ephem) across places, dates and events; a few
almanac values hold without ephem; polar day and night behave as in Celery; and a
django-celery-beat solar entry gets a next due time, an interval and its missed runs."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from exporter.beat import schedule as sched
from exporter.beat.django import row_entry
from exporter.beat.solar import EVENTS, SETTLE, Solar, next_event

UTC = dt.timezone.utc


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _celery(event: str, lat: float, lon: float, ts: float) -> float:
    """Celery's next due time for a solar entry last run at `ts` (ephem underneath)."""
    from celery.schedules import solar

    last = dt.datetime.fromtimestamp(ts, UTC)
    entry = solar(event, lat, lon, nowfun=lambda: last)
    return (last + entry.remaining_estimate(last)).timestamp()


def _cases(
    n: int, lat_range: tuple[float, float], seed: int
) -> list[tuple[str, float, float, float]]:
    rnd = random.Random(seed)
    lo, hi = _ts("2000-01-01T00:00:00"), _ts("2040-01-01T00:00:00")
    return [(rnd.choice(sorted(EVENTS)), rnd.uniform(*lat_range), rnd.uniform(-180, 180),
             rnd.uniform(lo, hi)) for _ in range(n)]  # fmt: skip


def test_agrees_with_celerys_solar_at_mid_latitudes() -> None:
    pytest.importorskip("ephem")
    errors: dict[str, float] = {}
    for event, lat, lon, ts in _cases(600, (-45.0, 45.0), seed=14):
        diff = abs(next_event(event, lat, lon, ts) - _celery(event, lat, lon, ts))
        errors[event] = max(errors.get(event, 0.0), diff)
    assert set(errors) == set(EVENTS)
    for event in ("sunrise", "sunset", "solar_noon"):
        assert errors[event] < 10.0, errors
    assert max(errors.values()) < 30.0, errors


def test_agrees_with_celerys_solar_at_high_latitudes() -> None:
    """Beyond 45 degrees the Sun crosses the twilight horizons at a grazing angle (and some
    do not happen for weeks): close, and at most the edge day of a season differs."""
    pytest.importorskip("ephem")
    diffs = []
    for event, lat, lon, ts in _cases(400, (45.0, 66.0), seed=66):
        sign = random.Random(ts).choice((1, -1))
        diffs.append(abs(next_event(event, sign * lat, lon, ts)
                         - _celery(event, sign * lat, lon, ts)))  # fmt: skip
    diffs.sort()
    assert diffs[len(diffs) // 2] < 5.0
    assert sum(d < 120.0 for d in diffs) >= 0.98 * len(diffs), diffs[-10:]


def test_midnight_sun_and_polar_night_as_celery() -> None:
    pytest.importorskip("ephem")
    tromso = (69.65, 18.96)
    for event, start in (("sunset", "2024-06-01T12:00:00"), ("sunrise", "2024-12-10T12:00:00"),
                         ("dusk_astronomical", "2024-06-20T12:00:00")):  # fmt: skip
        ts = _ts(start)
        ours, theirs = next_event(event, *tromso, ts), _celery(event, *tromso, ts)
        assert ours - ts > 20 * 86400  # weeks away, not tomorrow
        assert abs(ours - theirs) < 600.0, (event, ours - theirs)


@pytest.mark.parametrize(
    ("event", "lat", "lon", "after", "expected"),
    [
        # solar noon at Greenwich: 12:00 UTC minus the equation of time (+16 min 26 s in early
        # November, -14 min 14 s in mid February)
        ("solar_noon", 51.4769, 0.0, "2024-11-03T00:00:00", "2024-11-03T11:43:34"),
        ("solar_noon", 51.4769, 0.0, "2024-02-11T00:00:00", "2024-02-11T12:14:14"),
        # on the equator at an equinox: 6 h before noon (12:07:30 UTC at longitude 0, the
        # equation of time being -7 min 30 s), less 3 min 20 s for the upper limb at -0:34
        # (50 arcminutes of the Sun's 15 degrees an hour)
        ("sunrise", 0.0, 0.0, "2024-03-20T00:00:00", "2024-03-20T06:04:10"),
    ],
)
def test_almanac_values(event: str, lat: float, lon: float, after: str, expected: str) -> None:
    assert abs(next_event(event, lat, lon, _ts(after)) - _ts(expected)) < 150.0


def test_a_run_never_finds_its_own_event_again() -> None:
    berlin = Solar("sunrise", 52.52, 13.4)
    rise = next_event("sunrise", 52.52, 13.4, _ts("2026-03-28T00:00:00"))
    # beat sent it a moment after sunrise; an estimate off by seconds must still say tomorrow
    for sent in (rise - 5.0, rise, rise + 0.5):
        following = berlin.next_after(sent)
        assert 86000 < following - rise < 86400 + 600
    assert berlin.next_after(rise - SETTLE - 60) == pytest.approx(rise, abs=0.1)


def _row(event: Any, lat: Any, lon: Any, last_run: dt.datetime | None) -> tuple[Any, ...]:
    head = ("dawn", "app.dawn", True, False, last_run, 1, None, None, None, None, "d41d8cd9")
    return (*head, *[None] * 8, event, None, lat, lon)  # no interval, crontab nor clocked


def test_a_django_solar_entry_is_due_and_missed() -> None:
    now = _ts("2026-03-28T12:00:00")
    last = dt.datetime(2026, 3, 25, 6, 0, tzinfo=UTC)  # three sunrises ago, give or take
    entry = row_entry(_row("sunrise", "52.520000", "13.400000", last), now, UTC)
    assert entry.schedule == Solar("sunrise", 52.52, 13.4)
    due = sched.next_after(entry.schedule, last.timestamp())
    assert due == pytest.approx(next_event("sunrise", 52.52, 13.4, last.timestamp() + SETTLE))
    assert dt.datetime.fromtimestamp(due, UTC).date() == dt.date(2026, 3, 26)
    assert sched.missed(entry.schedule, due, now) == 3  # the 26th, 27th and 28th
    assert 86000 < (sched.period(entry.schedule, due) or 0) < 86400
    # a long outage is counted one a day past the exact ones
    assert sched.missed(entry.schedule, due, now + 100 * 86400) == pytest.approx(103, abs=1)


@pytest.mark.parametrize(
    ("event", "lat", "lon"),
    [("moonrise", 1, 1), ("sunrise", 91, 0), ("sunrise", 0, 181), ("sunrise", "x", 0),
     ("sunrise", None, 0), ("sunrise", float("nan"), 0), (None, 0, 0)],
)  # fmt: skip
def test_bad_solar_rows_are_skipped(event: Any, lat: Any, lon: Any) -> None:
    from exporter.beat.decode import BAD_SCHEDULE, Skip

    with pytest.raises(Skip) as skip:
        row_entry(_row(event, lat, lon, None), 0.0, UTC)
    assert skip.value.reason == BAD_SCHEDULE
