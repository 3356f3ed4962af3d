"""`LabelGuard`: bounds the distinct values of one label; later ones fold into "other".

The ledger keeps one per label (name, queue_name, exception, hostname) in its tables and
calls it under its own lock; nothing here locks.
"""

from __future__ import annotations

from exporter.decode.clean import label

UNKNOWN = "unknown"
OTHER = "other"


class LabelGuard:
    """Admits up to `limit` distinct values of one label; later ones fold into "other"."""

    __slots__ = ("default", "limit", "overflow", "values")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.values: set[str] = set()
        self.overflow = 0  # observations folded into "other"
        self.default = UNKNOWN  # what a missing value is labelled (--default-queue-name)

    def __call__(self, value: str | None) -> str:
        if not value:
            return UNKNOWN
        if value in self.values:
            return value
        if not (value.isascii() and value.isprintable()) or len(value) > 500:
            # The decoders clean labels already: this only keeps a value no scrape can
            # render (say, a lone surrogate) out of the counters whatever its path.
            value = label(value)
            if value is None:
                return UNKNOWN
            if value in self.values:
                return value
        if len(self.values) >= self.limit:
            self.overflow += 1
            return OTHER
        self.values.add(value)
        return value
