"""Cleaning rules every decoder applies to what came from outside: text, nesting, numbers, dates.

One rule per concept, so a name reads the same whichever source brought it:
- `label`: a string that may become a label value, a log word or an API field. Valid
  Unicode (a lone UTF-16 surrogate, as JSON's "\\ud800" gives, becomes U+FFFD; that is also
  what an invalid UTF-8 byte becomes), no control characters (C0, C1, DEL, line and
  paragraph separators become U+FFFD), at most `limit` characters. Empty or not a string:
  None.
- `text`: the same for free text (exception messages), which keeps tabs and newlines.
- `bounded_str`: `str()` of a decoded JSON value with nesting cut at `MAX_DEPTH` and output
  cut at a length, so a 1,000-deep list (which orjson accepts and `str()` cannot print: it
  raises RecursionError) reads as "[[[...]]]". Nothing here recurses deeper than MAX_DEPTH.
- `depth_within`: whether a decoded value nests no deeper than a bound; iterative.
- `epoch`: a date (ISO text) -> epoch seconds, or None when it is not a date or lies outside
  what `datetime` can hold in UTC (e.g. "9999-12-31T23:59:59-23:59" is year 10000 in UTC).
- `finite`: a number that may be shown, or None.

The clean input costs one or two C string checks (`isascii`, `isprintable`), measured in the
reconcile bench (1M results): see bench/RESULTS.md.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

MAX_DEPTH = 32  # containers deeper than this in exception text read as "[...]"/"{...}"
REPLACEMENT = "\ufffd"
# Anything before year 1 or after year 9999 in UTC: datetime.fromtimestamp cannot hold it.
# The bounds are whole seconds inside the range (the float of 9999-12-31T23:59:59.999999
# rounds up to year 10000).
MIN_EPOCH = float(datetime(1, 1, 2, tzinfo=timezone.utc).timestamp())
MAX_EPOCH = float(datetime(9999, 12, 30, tzinfo=timezone.utc).timestamp())

_HUGE = 10**4000
_BAD_LABEL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_BAD_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def label(value: Any, limit: int = 500) -> str | None:
    """A clean, bounded label-safe string, or None (empty, or not a string)."""
    if value.__class__ is not str or not value:
        return None
    if len(value) > limit:
        value = value[:limit]
    if value.isascii() and value.isprintable():  # the clean case: two C scans
        return value
    return _BAD_LABEL.sub(REPLACEMENT, value)


def text(value: Any, limit: int = 2000) -> str | None:
    """Free text (newlines and tabs kept), clean and bounded, or None."""
    if value.__class__ is not str or not value:
        return None
    if len(value) > limit:
        value = value[:limit]
    if value.isascii() and value.isprintable():
        return value
    return _BAD_TEXT.sub(REPLACEMENT, value)


def bounded_str(value: Any, limit: int = 2000) -> str:
    """`str(value)` for decoded JSON, with depth and length bounded; never raises."""
    if value.__class__ is str:
        return value[:limit]
    out: list[str] = []
    _repr(value, 0, out, [limit])
    return "".join(out)[:limit]


def _repr(value: Any, depth: int, out: list[str], budget: list[int]) -> None:
    """Append Python's repr of a JSON value to `out` until `budget[0]` characters are used."""
    if budget[0] <= 0:
        return
    cls = value.__class__
    if cls is list or cls is tuple or cls is dict:
        opener, closer = ("{", "}") if cls is dict else ("[", "]")
        if depth >= MAX_DEPTH:
            piece = f"{opener}...{closer}"
            out.append(piece)
            budget[0] -= len(piece)
            return
        out.append(opener)
        budget[0] -= 1
        items = value.items() if cls is dict else value
        for n, item in enumerate(items):
            if budget[0] <= 0:
                break
            if n:
                out.append(", ")
                budget[0] -= 2
            if cls is dict:
                _repr(item[0], depth + 1, out, budget)
                out.append(": ")
                budget[0] -= 2
                _repr(item[1], depth + 1, out, budget)
            else:
                _repr(item, depth + 1, out, budget)
        out.append(closer)
        budget[0] -= 1
        return
    if cls is str:
        piece = repr(value[: budget[0] + 2])
    elif cls is int and not -_HUGE < value < _HUGE:
        piece = "<a very large integer>"  # str() refuses ints of more than 4,300 digits
    else:
        try:
            piece = repr(value)
        except Exception:
            piece = f"<{cls.__name__}>"
    out.append(piece)
    budget[0] -= len(piece)


def depth_within(value: Any, limit: int) -> bool:
    """Whether `value` nests no deeper than `limit` containers (iterative; stops early)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        cls = item.__class__
        if cls is list or cls is dict:
            if depth >= limit:
                return False
            children = item.values() if cls is dict else item
            stack.extend((child, depth + 1) for child in children)
    return True


def finite(value: Any) -> float | None:
    """A real, finite number as a float, else None (bools are not numbers here)."""
    cls = value.__class__
    if cls is float:
        return value if math.isfinite(value) else None
    if cls is int:
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def epoch(value: Any) -> float | None:
    """Celery's ISO `date_done` -> epoch seconds; naive dates are UTC (Celery's default).

    `datetime.fromisoformat` (C) is the fast path too: for Celery's "+00:00" form it returns
    the shared UTC timezone, and it plus `timestamp()` costs about 0.3 us, a third of the
    hand-written slicing this replaced (and it is the definition of the right answer).
    A date that only exists before the shift to UTC (year 1 or 9999 with an offset) is
    unknown: None."""
    if value.__class__ is not str or len(value) > 64:
        return None
    try:
        parsed = _fromisoformat(value)  # Python 3.11 reads a trailing "Z" too
    except ValueError:
        if "Z" not in value:
            return None
        try:  # as before 3.11: every "Z" read as UTC
            parsed = _fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        when = parsed.timestamp()
    except (OverflowError, ValueError):
        return None
    return when if MIN_EPOCH <= when <= MAX_EPOCH else None


def in_range(value: float | None) -> float | None:
    """An epoch that `datetime.fromtimestamp` can hold, else None (NaN and inf included)."""
    if value is None or not MIN_EPOCH <= value <= MAX_EPOCH:
        return None
    return value


_fromisoformat = datetime.fromisoformat
