"""Celery's `solar` schedule computed without `ephem`: the next sunrise, sunset, solar noon,
dawn or dusk after a time, for a latitude and longitude, by Celery's own rules.

Celery (celery.schedules.solar) asks ephem for the next rising, setting or transit of the Sun
after the last run, with the observer at sea level, no atmosphere (pressure 0) and these
horizons: sunrise and sunset at -0:34 for the Sun's upper limb; civil, nautical and
astronomical dawn and dusk at -6, -12 and -18 degrees for its centre; solar noon its transit.
When an event does not happen on a day (polar day or night), Celery searches on from the next
antitransit, for at most 366 days, and returns where the search stopped.

The Sun's place is the low-precision series of Meeus, Astronomical Algorithms ch. 25 (apparent
longitude within 0.01 degree), sidereal time by the IAU 1982 formula, the Earth's rotation as
UTC (delta T is 70 s of solar motion: 3 arcseconds). Each event is found between the Sun's
transit and antitransit, where its altitude is monotonic, by bisection to 0.05 s.

Accuracy against ephem through Celery's own `solar` (tests/unit/test_beat_solar.py; 3,000
random cases, latitudes -65..65, years 2000-2040): median 1 s, 99% within 15 s; solar noon,
sunrise and sunset within 10 s; dawn and dusk within about a minute at high latitudes, where
the Sun crosses those horizons at a grazing angle. Near the poles the first or last day of a
season in which an event happens at all may differ from ephem's by a day.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

DAY = 86400.0
SIDEREAL_RATE = 360.98564736629  # degrees of hour angle per day (plus the Sun's own motion)
MAX_SEARCH_DAYS = 366  # as Celery's solar.max_search_days
SETTLE = 120.0  # seconds after a run in which its own event is not looked for again

# event -> (horizon in degrees, upper limb instead of centre, rising +1 / setting -1 / transit 0)
EVENTS: dict[str, tuple[float, bool, int]] = {
    "dawn_astronomical": (-18.0, False, 1),
    "dawn_nautical": (-12.0, False, 1),
    "dawn_civil": (-6.0, False, 1),
    "sunrise": (-34 / 60, True, 1),
    "solar_noon": (0.0, False, 0),
    "sunset": (-34 / 60, True, -1),
    "dusk_civil": (-6.0, False, -1),
    "dusk_nautical": (-12.0, False, -1),
    "dusk_astronomical": (-18.0, False, -1),
}


@dataclass(frozen=True)
class Solar:
    """django-celery-beat's solar schedule: an event at a place (degrees, east positive)."""

    event: str
    lat: float
    lon: float

    @property
    def text(self) -> str:
        return f"solar {self.event} {self.lat:g},{self.lon:g}"

    def next_after(self, ts: float) -> float:
        """The event's first time after `ts` (Unix seconds), as Celery's `solar` finds it.

        Searched from SETTLE seconds after `ts`: beat runs an entry a moment after its event,
        and an error of a few seconds here must not find that same event again."""
        return next_event(self.event, self.lat, self.lon, ts + SETTLE)


def valid(event: str, lat: float, lon: float) -> bool:
    return event in EVENTS and -90 <= lat <= 90 and -180 <= lon <= 180


def _sun(ts: float) -> tuple[float, float, float]:
    """(right ascension, declination, semidiameter) of the Sun in degrees at Unix time ts."""
    jd = ts / DAY + 2440587.5
    t = (jd - 2451545.0) / 36525.0
    l0 = 280.46646 + t * (36000.76983 + 0.0003032 * t)
    m = math.radians(357.52911 + t * (35999.05029 - 0.0001537 * t))
    e = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    c = ((1.914602 - t * (0.004817 + 0.000014 * t)) * math.sin(m)
         + (0.019993 - 0.000101 * t) * math.sin(2 * m) + 0.000289 * math.sin(3 * m))  # fmt: skip
    omega = math.radians(125.04 - 1934.136 * t)
    lam = math.radians(l0 + c - 0.00569 - 0.00478 * math.sin(omega))
    eps0 = 23 + (26 + (21.448 - t * (46.815 + t * (0.00059 - 0.001813 * t))) / 60) / 60
    eps = math.radians(eps0 + 0.00256 * math.cos(omega))
    ra = math.degrees(math.atan2(math.cos(eps) * math.sin(lam), math.cos(lam)))
    dec = math.degrees(math.asin(math.sin(eps) * math.sin(lam)))
    r = 1.000001018 * (1 - e * e) / (1 + e * math.cos(m + math.radians(c)))
    return ra, dec, 0.26667 / r


def _hour_angle(ts: float, lon: float, ra: float) -> float:
    """The Sun's local hour angle in degrees, in (-180, 180]."""
    d = ts / DAY + 2440587.5 - 2451545.0
    t = d / 36525.0
    gmst = 280.46061837 + 360.98564736629 * d + t * t * (0.000387933 - t / 38710000)
    h = (gmst + lon - ra) % 360.0
    return h - 360.0 if h > 180.0 else h


def _altitude(ts: float, lat: float, lon: float, upper_limb: bool) -> float:
    ra, dec, semi = _sun(ts)
    h, phi, delta = (math.radians(v) for v in (_hour_angle(ts, lon, ra), lat, dec))
    sin_alt = math.sin(phi) * math.sin(delta) + math.cos(phi) * math.cos(delta) * math.cos(h)
    alt = math.degrees(math.asin(max(-1.0, min(1.0, sin_alt))))
    return alt + semi if upper_limb else alt


def _crossing(ts: float, lon: float, target: float) -> float:
    """The first time after `ts` when the Sun's hour angle is `target` (0 transit, 180 anti)."""
    ra = _sun(ts)[0]
    ahead = (target - _hour_angle(ts, lon, ra)) % 360.0
    t = ts + (ahead or 360.0) / SIDEREAL_RATE * DAY
    for _ in range(3):  # the Sun moves about 1 degree a day: two steps are seconds
        off = (_hour_angle(t, lon, _sun(t)[0]) - target + 180.0) % 360.0 - 180.0
        t -= off / 360.0 * DAY
    return t


def _bisect(lo: float, hi: float, height: Callable[[float], float], rising: bool) -> float:
    """Where `height` (altitude above the horizon) crosses 0 between lo and hi."""
    for _ in range(20):  # 12 h / 2**20 is 0.04 s
        mid = (lo + hi) / 2
        if (height(mid) > 0) == rising:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


@lru_cache(maxsize=4096)
def next_event(event: str, lat: float, lon: float, ts: float) -> float:
    horizon, upper, direction = EVENTS[event]
    if direction == 0:
        return _crossing(ts, lon, 0.0)

    def above(t: float) -> float:
        return _altitude(t, lat, lon, upper) - horizon

    # Rising happens between an antitransit and the next transit, setting between a transit
    # and the next antitransit; the window that holds `ts` is searched from `ts` on.
    start_half, end_half = (180.0, 0.0) if direction > 0 else (0.0, 180.0)
    hi = _crossing(ts, lon, end_half)
    lo = min(hi, _crossing(ts, lon, start_half))
    lo = ts if lo >= hi else lo  # ts is inside its window: search from ts
    for _ in range(MAX_SEARCH_DAYS + 1):
        a_lo, a_hi = above(lo), above(hi)
        if direction > 0 and a_lo <= 0 < a_hi:
            return _bisect(lo, hi, above, True)
        if direction < 0 and a_lo > 0 >= a_hi:
            return _bisect(lo, hi, above, False)
        lo = _crossing(hi, lon, start_half)
        hi = _crossing(lo, lon, end_half)
    return lo  # as Celery: where the search stopped, to look again then
