"""Runtime and queue-wait histograms of the ledger, and the copies collectors read.

`TaskHistograms` observes each task at most once per histogram; the ledger calls it under
its own lock; nothing here locks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

from exporter.ledger.entry import BIT, Entry
from exporter.ledger.hosts import HostCounts
from exporter.taskdata import SUCCESS

_SUCCEEDED = BIT[SUCCESS]
LabelFn = Callable[[Entry], tuple[str, str]]


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
        self.hosts: HostCounts | None = None  # --compat: successes' runtimes per node too

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
                    self.add(True, labels(e), runtime, e)
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

    def add(self, runtime: bool, labels: tuple[str, str], value: float, e: Entry) -> None:
        if runtime:
            self._get(self.runtime, labels, self.buckets).observe(value)
            if self.hosts is not None and e.seen & _SUCCEEDED:
                self.hosts.observe(*labels, e.worker, value)
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
