"""Bounded building blocks of the ledger: label guards, histograms, the success window, copies.

Kept apart from `ledger.py` so the ledger module stays about de-duplication and counting.
Nothing here locks: the ledger calls these under its own lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exporter.decode.clean import label

if TYPE_CHECKING:
    from exporter.ledger_entry import Entry

LabelFn = Callable[["Entry"], "tuple[str, str]"]
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


class Histogram:
    """Cumulative-on-read histogram: per-bucket counts (last slot is +Inf), sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> HistogramData:
        cumulative: list[int] = []
        total = 0
        for c in self.counts:
            total += c
            cumulative.append(total)
        return HistogramData(self.bounds, tuple(cumulative), self.sum)

    def to_json(self) -> list[object]:
        return [list(self.counts), self.sum]

    def load_json(self, data: object) -> None:
        if not isinstance(data, list) or len(data) != 2:
            return
        counts, total = data
        if isinstance(counts, list) and len(counts) == len(self.counts):
            self.counts = [int(c) for c in counts]
            self.sum = float(total)


class TaskHistograms:
    """Runtime and queue-wait histograms per (name, queue); each task observed at most once."""

    def __init__(
        self, buckets: tuple[float, ...], wait_buckets: tuple[float, ...], derive_runtime: bool
    ) -> None:
        self.buckets, self.wait_buckets = buckets, wait_buckets
        self.derive_runtime = derive_runtime
        self.runtime: dict[tuple[str, str], Histogram] = {}
        self.wait: dict[tuple[str, str], Histogram] = {}

    def observe(
        self, e: Entry, runtime: float | None, now: float, labels: LabelFn | None
    ) -> tuple[float | None, float | None]:
        """What became observable for this task (inputs may arrive in any order): a runtime
        and a queue wait, each at most once per task. Recorded at once under `labels(e)`;
        without `labels` returned instead, for the caller to record (`add`) later."""
        observed: float | None = None
        wait: float | None = None
        if not e.runtime_done and e.finished_at is not None:
            # Without events, STARTED comes from pub/sub and started_at is when we heard it.
            if runtime is None and self.derive_runtime and e.started_at is not None:
                runtime = now - e.started_at
            if runtime is not None and runtime >= 0:
                e.runtime_done = True
                if labels is not None:
                    self._get(self.runtime, labels(e), self.buckets).observe(runtime)
                else:
                    observed = runtime
        if not e.wait_done and e.started_at is not None:
            base = e.sent_at
            if e.eta is not None and (base is None or e.eta > base):
                base = e.eta
            if base is not None:
                e.wait_done = True
                # Producer and worker clocks differ: a negative wait is skew, not speed.
                value = max(0.0, e.started_at - base)
                if labels is not None:
                    self._get(self.wait, labels(e), self.wait_buckets).observe(value)
                else:
                    wait = value
        return observed, wait

    def add(self, runtime: bool, labels: tuple[str, str], value: float) -> None:
        if runtime:
            self._get(self.runtime, labels, self.buckets).observe(value)
        else:
            self._get(self.wait, labels, self.wait_buckets).observe(value)

    @staticmethod
    def _get(
        table: dict[tuple[str, str], Histogram], key: tuple[str, str], bounds: tuple[float, ...]
    ) -> Histogram:
        hist = table.get(key)
        if hist is None:
            hist = table[key] = Histogram(bounds)
        return hist


@dataclass(frozen=True)
class HistogramData:
    """A copy for collectors: `cumulative[i]` counts observations <= bounds[i]; last is +Inf."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0


class OutcomeWindow:
    """Successes and failures per second and task name, kept only for the last `window` s."""

    def __init__(self, window: float) -> None:
        self.window = window
        # [second, {name: [succeeded, failed]}], oldest first
        self._slots: deque[tuple[int, dict[str, list[int]]]] = deque()

    def add(self, now: float, name: str, ok: bool) -> None:
        second = int(now)
        if not self._slots or self._slots[-1][0] != second:
            # A clock that steps back writes into the newest slot rather than reordering.
            if self._slots and self._slots[-1][0] > second:
                second = self._slots[-1][0]
            else:
                self._slots.append((second, {}))
        slot = self._slots[-1][1].setdefault(name, [0, 0])
        slot[0 if ok else 1] += 1
        self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        while self._slots and self._slots[0][0] < horizon:
            self._slots.popleft()

    def totals(self, now: float, window: float) -> dict[str, tuple[int, int]]:
        horizon = now - window
        out: dict[str, list[int]] = {}
        for second, names in self._slots:
            if second < horizon:
                continue
            for name, (ok, bad) in names.items():
                for key in (name, ""):
                    acc = out.setdefault(key, [0, 0])
                    acc[0] += ok
                    acc[1] += bad
        return {k: (v[0], v[1]) for k, v in out.items()}


@dataclass(frozen=True)
class LedgerCounts:
    """A copy of the counters, for the collectors and the API."""

    # (name, queue, counter) -> total, counter in COUNTER_FOR_STATE's values
    tasks: dict[tuple[str, str, str], int]
    # (name, exception type) -> failures
    exceptions: dict[tuple[str, str], int]
    entries: int
    evictions: int
    overflowed_names: int
    # (name, queue, counter, hostname) -> total; filled only with --task-worker-label
    tasks_by_worker: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    runtime: dict[tuple[str, str], HistogramData] = field(default_factory=dict)
    queue_wait: dict[tuple[str, str], HistogramData] = field(default_factory=dict)
    # label -> observations folded into "other"
    overflow: dict[str, int] = field(default_factory=dict)
    # ready updates dropped because they were older than the reconcile watermark
    watermark: float = 0.0
    # label values admitted so far per label, i.e. how close each guard is to its bound
    label_values: dict[str, int] = field(default_factory=dict)
    # evicted ids remembered until a completed reconcile covers them, and those given up
    evicted_ids: int = 0
    evicted_ids_dropped: int = 0
    # tasks whose name no source gave within --label-grace (counted under name="unknown"),
    # tasks whose effects wait for a name or queue now, and those released early by a bound
    unattributed: int = 0
    label_pending: int = 0
    label_overflow: int = 0
