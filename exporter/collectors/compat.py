"""Collector `compat` (`--compat danihodovic`): celery-exporter's families, names and labels.

Task counters and histograms come from `compat.view_for` (deliveries from events, outcomes
and runtimes from the ledger); worker and queue gauges from the snapshot, with
celery-exporter's `hostname` (the host part of the node name: workers of one host share a
series, up if any is, their active tasks summed).
`OwnOnly` keeps only the exporter's own health families of a collector, which compat mode
serves besides these.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter.compat import view_for
from exporter.compat.counts import Key
from exporter.compat.view import KINDS, CompatView
from exporter.decode.compat import host_part
from exporter.state import State

OWN_PREFIX = "celery_exporter_"
_HELP = {
    "sent": "Task-sent events (each publish, a retry's too; needs task_send_sent_event)",
    "received": "Task-received events: each delivery to a worker counts, retries again",
    "started": "Task-started events: each run counts, retries again",
    "succeeded": "Tasks that succeeded, once each (the ledger: events, results, reconcile)",
    "failed": "Tasks that failed, once each, by exception class (the ledger)",
    "rejected": "Tasks a worker rejected (the ledger)",
    "revoked": "Tasks revoked (the ledger)",
    "retried": "Retries, once each (the ledger: events, results' retry numbers)",
}
_LABELS = ["name", "hostname", "queue_name"]


class OwnOnly(Collector):
    """Only the `celery_exporter_*` families of `inner`."""

    def __init__(self, inner: Collector) -> None:
        self._inner = inner

    def collect(self) -> Iterator[Metric]:
        return (f for f in self._inner.collect() if f.name.startswith(OWN_PREFIX))


class CompatCollector(Collector):
    def __init__(self, state: State) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        view = view_for(self._state)
        if view is None:
            return
        yield from _counters(view)
        yield from self._workers()
        yield from _histograms(view)
        yield from self._queues()
        overflow = CounterMetricFamily(
            "celery_exporter_compat_label_overflow",
            'Compat mode: task events whose label value (or combination, label="series") '
            'was folded into "other"',
            labels=["label"],
        )
        for label, value in sorted(view.overflow.items()):
            overflow.add_metric([label], value)
        yield overflow
        yield GaugeMetricFamily(
            "celery_exporter_compat_tasks",
            "Compat mode: task ids whose name, queue and sent time are remembered for their "
            "later events (bounded by a quarter of --ledger-max-tasks)",
            value=view.tasks,
        )

    def _workers(self) -> Iterator[Metric]:
        up: dict[str, float] = {}
        active: dict[str, int] = {}
        for w in self._state.snapshot.workers.values():
            host = host_part(w.hostname) or w.hostname
            up[host] = max(up.get(host, 0.0), 1.0 if w.up else 0.0)
            if w.active is not None:
                active[host] = active.get(host, 0) + w.active
        up_f = GaugeMetricFamily(
            "celery_worker_up", "1 if a worker of this host is alive (celery-exporter's "
            "hostname: the host part of the node name)", labels=["hostname"])  # fmt: skip
        for host in sorted(up):
            up_f.add_metric([host], up[host])
        active_f = GaugeMetricFamily(
            "celery_worker_tasks_active", "Tasks the workers of this host are executing",
            labels=["hostname"])  # fmt: skip
        for host in sorted(active):
            active_f.add_metric([host], active[host])
        yield up_f
        yield active_f

    def _queues(self) -> Iterator[Metric]:
        snap = self._state.snapshot
        workers: dict[str, int] = {}
        processes: dict[str, int] = {}
        for w in snap.workers.values():
            for queue in w.queues if w.up else ():
                workers[queue] = workers.get(queue, 0) + 1
                processes[queue] = processes.get(queue, 0) + (w.pool_processes or 0)
        length = GaugeMetricFamily("celery_queue_length", "Messages waiting in the broker "
                                   "queue (Redis: priority sub-queues summed)",
                                   labels=["queue_name"])  # fmt: skip
        consumers = GaugeMetricFamily(
            "celery_active_consumer_count", "Consumers of the queue (RabbitMQ: the broker's "
            "count; Redis: live workers consuming it)", labels=["queue_name"])  # fmt: skip
        worker_f = GaugeMetricFamily(
            "celery_active_worker_count", "Live workers consuming the queue", labels=["queue_name"]
        )
        process_f = GaugeMetricFamily(
            "celery_active_process_count", "Pool processes of the live workers consuming the "
            "queue", labels=["queue_name"])  # fmt: skip
        for name in sorted(snap.queues):
            q = snap.queues[name]
            if q.length is not None:
                length.add_metric([name], q.length)
            consumers.add_metric([name], q.consumers if q.consumers is not None
                                 else workers.get(name, 0))  # fmt: skip
            worker_f.add_metric([name], workers.get(name, 0))
            process_f.add_metric([name], processes.get(name, 0))
        yield from (length, consumers, worker_f, process_f)


def _counters(view: CompatView) -> Iterator[Metric]:
    for kind in KINDS:
        labels = ["name", "hostname", "exception", "queue_name"] if kind == "failed" else _LABELS
        family = CounterMetricFamily(f"celery_task_{kind}", _HELP[kind], labels=labels)
        table = view.counters[kind]
        for key in sorted(table):
            if kind == "failed":  # stored as (name, hostname, queue_name, exception)
                family.add_metric([key[0], key[1], key[3], key[2]], table[key])
            else:
                family.add_metric(list(key), table[key])
        yield family


def _histograms(view: CompatView) -> Iterator[Metric]:
    for metric, table, bounds, help_text in (
        ("celery_task_runtime", view.runtime, view.runtime_bounds,
         "Runtime of succeeded tasks, seconds (the ledger, once per task)"),
        ("celery_task_queue_wait_time", view.queue_wait, view.wait_bounds,
         "Seconds from task-sent (or the ETA, if later) to task-started"),
    ):  # fmt: skip
        family = HistogramMetricFamily(metric, help_text, labels=_LABELS)
        for key in sorted(table):
            cumulative, total = table[key]
            family.add_metric(list(key), _buckets(bounds, cumulative), total)
        yield family


def _buckets(bounds: tuple[float, ...], cumulative: tuple[int, ...]) -> list[tuple[str, float]]:
    out = [(repr(float(b)), float(c)) for b, c in zip(bounds, cumulative, strict=False)]
    out.append(("+Inf", float(cumulative[-1])))
    return out


__all__ = ["CompatCollector", "Key", "OwnOnly"]
