"""`HostCounts`: the ledger's outcomes per worker node, for `--compat danihodovic`.

celery-exporter labels every task counter with the worker's `hostname`; the ledger's own
counters are per (name, queue). With compat on, the ledger also counts each outcome it
counts (succeeded, failed by exception, retried, revoked, rejected: exactly once per task,
the fold's de-duplication decides) under (name, queue, worker node) here, and observes each
success's runtime in celery-exporter's buckets. So the compat failure ratio by name is the
ledger's, in every source order, and not a second count from events. (Sent, received and
started stay per delivery, from events: compat/counts.py.)

Name and queue labels are the ledger's (already guarded when `count` is called); nodes and
exception types are bounded here (folded into "other"), and so are their combinations. The
ledger calls it under its own lock; nothing here locks. Not saved: after a restart these
start at zero, as celery-exporter's do.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from exporter.config import DEFAULT_BUCKETS, Config
from exporter.config_checks import DANIHODOVIC
from exporter.ledger.guard import OTHER, UNKNOWN, LabelGuard

# The outcomes counted here; the rest of COUNTER_FOR_STATE's counters are per delivery.
KINDS = frozenset(("succeeded", "failed", "retried", "revoked", "rejected"))
# celery-exporter's runtime buckets (prometheus_client's default histogram buckets).
REFERENCE_RUNTIME_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
REFERENCE_DEFAULT_QUEUE = "celery"  # celery-exporter's --default-queue-name
UNKNOWN_EXCEPTION = "UnknownException"  # celery-exporter's word for an unreadable exception

Row = tuple[str, str, str]  # (name, queue, worker node); "" is an unknown node


@dataclass(frozen=True)
class HostView:
    """A copy for one render."""

    # (name, queue, node, counter, exception) -> total; exception is "" but on "failed"
    counts: dict[tuple[str, str, str, str, str], int]
    runtime: dict[Row, tuple[tuple[int, ...], float]]  # row -> (cumulative buckets, sum)
    bounds: tuple[float, ...]
    overflow: dict[str, int]  # label ("hostname", "exception", "series") -> folded


class HostCounts:
    def __init__(self, bounds: tuple[float, ...], max_nodes: int, max_exceptions: int,
                 max_rows: int) -> None:  # fmt: skip
        self.bounds = tuple(bounds)
        self.nodes = LabelGuard(max_nodes)
        self.exceptions = LabelGuard(max_exceptions)
        self._rows: set[Row] = set()
        self._max_rows = max(1, max_rows)
        self._row_overflow = 0
        self.counts: dict[tuple[str, str, str, str, str], int] = {}
        self.runtime: dict[Row, list[float]] = {}  # bucket counts (last: +Inf), then the sum

    def _row(self, name: str, queue: str, node: str | None) -> Row:
        row = (name, queue, self.nodes(node) if node else "")
        if row not in self._rows:
            if len(self._rows) >= self._max_rows:
                self._row_overflow += 1
                return (OTHER, OTHER, OTHER)
            self._rows.add(row)
        return row

    def count(self, name: str, queue: str, node: str | None, counter: str,
              exc_type: str | None, n: int) -> None:  # fmt: skip
        """The ledger counted `n` of `counter` for a task of this name, queue and node."""
        if counter not in KINDS:
            return
        exc = self.exceptions(exc_type or UNKNOWN_EXCEPTION) if counter == "failed" else ""
        key = (*self._row(name, queue, node), counter, exc)
        self.counts[key] = self.counts.get(key, 0) + n

    def observe(self, name: str, queue: str, node: str | None, runtime: float) -> None:
        """A succeeded task's runtime (the ledger observes each task's at most once)."""
        observe(self.runtime, self._row(name, queue, node), self.bounds, runtime)

    def view(self) -> HostView:
        runtime = {row: cumulative(hist) for row, hist in self.runtime.items()}
        overflow = {"hostname": self.nodes.overflow, "exception": self.exceptions.overflow,
                    "series": self._row_overflow}  # fmt: skip
        return HostView(dict(self.counts), runtime, self.bounds, overflow)


def observe(table: dict[Any, list[float]], key: object, bounds: tuple[float, ...],
            value: float) -> None:  # fmt: skip
    """One observation into a flat histogram row: per-bucket counts (last: +Inf), then the
    sum."""
    hist = table.get(key)
    if hist is None:
        hist = table[key] = [0.0] * (len(bounds) + 2)
    hist[bisect_left(bounds, value)] += 1
    hist[-1] += value


def cumulative(hist: list[float]) -> tuple[tuple[int, ...], float]:
    """Per-bucket counts then the sum -> (cumulative counts, sum)."""
    running, acc = 0, []
    for c in hist[:-1]:
        running += int(c)
        acc.append(running)
    return tuple(acc), hist[-1]


def compat_default_queue(config: Config) -> str:
    """The queue_name of a task no source names: --default-queue-name when set, else
    celery-exporter's "celery" (ours is "unknown")."""
    name = config.default_queue_name
    return REFERENCE_DEFAULT_QUEUE if name == UNKNOWN else name


def runtime_buckets(config: Config) -> tuple[float, ...]:
    """--buckets when set, else celery-exporter's default (ours differ)."""
    return REFERENCE_RUNTIME_BUCKETS if config.buckets == DEFAULT_BUCKETS else config.buckets


def hosts_for(config: Config) -> HostCounts | None:
    """The per-node table `--compat danihodovic` needs, bounded like its labels; else None."""
    if config.compat != DANIHODOVIC:
        return None
    return HostCounts(runtime_buckets(config), config.max_workers, config.max_exception_types,
                      10 * config.max_task_names)  # fmt: skip
