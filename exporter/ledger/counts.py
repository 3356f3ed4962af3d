"""`LedgerCounts`: the copy of the ledger's counters that collectors and the API read."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.ledger.histograms import HistogramData


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
