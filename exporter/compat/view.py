"""`CompatView`: what `--compat danihodovic` renders, joined from its two inputs.

Deliveries (sent, received, started and queue wait: compat/counts.py, from events) and the
ledger's outcomes per worker node (succeeded, failed by exception, retried, revoked,
rejected and runtime: ledger/hosts.py, counted once per task whichever source told) are put
under celery-exporter's labels here: `hostname` is the host part of the node name (nodes of
one host add up), "unknown" where no source named the worker, "generic" with
--generic-hostname-worker-task-metric. Every labels seen by any counter exist at 0 in every
other one but sent (whose hosts are producers), as in celery-exporter, so a task that only
fails has a success series at 0 for ratios to divide by. Plain data in, plain data out.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.compat.counts import UNKNOWN_HOST, DeliveryView, Key
from exporter.decode.compat import host_part
from exporter.ledger.hosts import HostView

# celery-exporter's counter order (its families are registered in this order).
KINDS = ("sent", "received", "started", "succeeded", "failed", "rejected", "revoked", "retried")
GENERIC = "generic"


@dataclass(frozen=True)
class CompatView:
    """A consistent copy for one render."""

    # kind -> labels -> value, zeros included; failed's labels end with the exception
    counters: dict[str, dict[tuple[str, ...], int]]
    runtime: dict[Key, tuple[tuple[int, ...], float]]  # labels -> (cumulative buckets, sum)
    queue_wait: dict[Key, tuple[tuple[int, ...], float]]
    runtime_bounds: tuple[float, ...]
    wait_bounds: tuple[float, ...]
    overflow: dict[str, int]
    tasks: int


def join(deliveries: DeliveryView, hosts: HostView | None, generic: bool) -> CompatView:
    """The view of one render; `generic`: --generic-hostname-worker-task-metric."""
    counters: dict[str, dict[tuple[str, ...], int]] = {kind: {} for kind in KINDS}
    for kind, delivered in deliveries.counters.items():
        table = counters[kind]
        for key, n in delivered.items():
            table[key] = n
    runtime: dict[Key, tuple[tuple[int, ...], float]] = {}
    overflow = dict(deliveries.overflow)
    bounds: tuple[float, ...] = ()
    if hosts is not None:
        bounds = hosts.bounds
        hostname = _Hostnames(generic)
        for (name, queue, node, counter, exc), n in hosts.counts.items():
            key = (name, hostname(node), queue)
            labels: tuple[str, ...] = (*key, exc) if counter == "failed" else key
            table = counters[counter]
            table[labels] = table.get(labels, 0) + n  # nodes of one host add up
        for (name, queue, node), (cumulative, total) in hosts.runtime.items():
            key = (name, hostname(node), queue)
            had = runtime.get(key)
            if had is not None:
                cumulative = tuple(a + b for a, b in zip(had[0], cumulative, strict=True))
                total += had[1]
            runtime[key] = (cumulative, total)
        for label, value in hosts.overflow.items():
            overflow[label] = overflow.get(label, 0) + value
    _zeros(counters)
    return CompatView(counters, runtime, deliveries.queue_wait, bounds,
                      deliveries.wait_bounds, overflow, deliveries.tasks)  # fmt: skip


class _Hostnames:
    """Node name -> celery-exporter's hostname label, each node read once per render."""

    def __init__(self, generic: bool) -> None:
        self._generic = generic
        self._seen: dict[str, str] = {}

    def __call__(self, node: str) -> str:
        if self._generic:
            return GENERIC
        host = self._seen.get(node)
        if host is None:
            host = self._seen[node] = (host_part(node) if node else None) or UNKNOWN_HOST
        return host


def _zeros(counters: dict[str, dict[tuple[str, ...], int]]) -> None:
    keys: set[tuple[str, ...]] = set()
    for kind, table in counters.items():
        if kind == "failed":
            keys.update(labels[:3] for labels in table)
        else:
            keys.update(table)
    for kind in KINDS[1:]:
        table = counters[kind]
        for key in keys:
            labels = (*key, "") if kind == "failed" else key
            if labels not in table:
                table[labels] = 0
