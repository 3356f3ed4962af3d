"""Reading saved ledger state back: rows of labels and counts, histograms, last run times
and dedup entries, each cleaned like any external input and never raising.

What was saved is input like any other (an older version may have saved a label holding a
lone surrogate, which no scrape can render): labels are cleaned with the decoders' rule,
rows of the wrong shape or type and counts that are not non-negative integers are dropped.
Used by durable.py; nothing here touches the tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from exporter.decode import clean
from exporter.ledger.attribution import HELD
from exporter.ledger.entry import READY_MASK, STATE_OF_BIT, Entry, shared_seen
from exporter.ledger.guard import UNKNOWN
from exporter.ledger.last import TRACKED
from exporter.ledger.pending import Effect
from exporter.taskdata import COUNTER_FOR_STATE

COUNTERS = frozenset(COUNTER_FOR_STATE.values())


def is_count(value: Any) -> bool:
    return value.__class__ is int and value >= 0


class Repairs:
    """Reads saved rows of labels and a count, cleaning labels and counting what it fixed."""

    def __init__(self) -> None:
        self.dropped = 0
        self.cleaned = 0

    def rows(
        self, rows: Any, width: int, labels: tuple[str | None, ...], hist: bool = False
    ) -> Iterator[tuple[tuple[str, ...], Any]]:
        for row in rows if isinstance(rows, list) else ():
            if not isinstance(row, list) or len(row) != width + 1:
                self.dropped += 1
                continue
            value = row[width]
            if not (_hist_ok(value) if hist else is_count(value)):
                self.dropped += 1
                continue
            out: list[str] = []
            for raw, kind in zip(row[:width], labels, strict=True):
                limit = 200 if kind == "exception" else 500
                text = clean.label(raw, limit) if isinstance(raw, str) else None
                if text is None and kind is not None and isinstance(raw, str):
                    text = UNKNOWN  # an empty label is the guards' "unknown"
                if text is None:
                    break
                if text != raw:
                    self.cleaned += 1
                out.append(text)
            else:
                yield tuple(out), value
                continue
            self.dropped += 1


def last_row(row: Any) -> tuple[str, list[float | None]] | None:
    """A saved [name label, [time or None per state]] row, cleaned; None when it is not one."""
    if not isinstance(row, list) or len(row) != 2 or not isinstance(row[1], list):
        return None
    name = clean.label(row[0]) if isinstance(row[0], str) else None
    if name is None or len(row[1]) > len(TRACKED):
        return None
    times: list[float | None] = []
    for raw in row[1]:
        when = None if raw is None else clean.in_range(clean.finite(raw))
        if raw is not None and when is None:
            return None
        times.append(when)
    return name, times


def _hist_ok(raw: Any) -> bool:
    """A saved histogram: [bucket counts (non-negative ints), finite sum]."""
    if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], list):
        return False
    return all(is_count(c) for c in raw[0]) and clean.finite(raw[1]) is not None


def decode_entry(encoded: Any) -> tuple[Entry, list[Effect]] | None:
    """One saved dedup entry and the effects it held, or None when it is not one (never
    raises)."""
    if not isinstance(encoded, str):
        return None
    try:
        seen, retries, settled, name, queue, *rest = encoded.split("\x1f")
        total, ev, other = (int(x) for x in retries.split("."))
        e = Entry("PENDING")
        e.seen = int(seen) & ~HELD  # set again below if effects wait
        e.settled = float(settled) if settled else None
    except ValueError:
        return None
    if min(e.seen, total, ev, other) < 0 or e.seen >= 1 << 16:
        return None
    e.set_retries(total, ev, other)
    if e.settled is not None and clean.finite(e.settled) is None:
        return None
    e.name = clean.label(name)
    e.queue = clean.label(queue)
    # The newest state the bits show, so the API does not call a finished task pending.
    for bit in sorted(STATE_OF_BIT, reverse=True):
        if e.seen & bit:
            e.state = STATE_OF_BIT[bit]
            break
    e.runtime_done = bool(e.seen & READY_MASK)
    e.wait_done = bool(e.seen & (READY_MASK | 4))  # 4: STARTED
    e.seen = shared_seen(e.seen)
    return e, _effects(rest[0]) if rest else []


def _effects(raw: str) -> list[Effect]:
    """Held effects read back; anything malformed is dropped, never raised."""
    try:
        items = json.loads(raw)
    except ValueError:
        return []
    out: list[Effect] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, list) or len(item) != 3:
            continue
        kind, a, b = item
        if kind == "c" and a in COUNTERS and _int(b) and 0 < b <= 1000:
            out.append(("c", a, b))
        elif kind == "x" and isinstance(a, str) and len(a) <= 200:
            out.append(("x", a, 0))
        elif kind == "w" and isinstance(a, bool):
            out.append(("w", a, 0))
        elif kind in ("r", "q") and _num(a) and 0 <= a < 1e12:
            out.append((kind, float(a), 0))
    return out


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _num(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
