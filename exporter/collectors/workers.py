"""Collector `workers`: per-worker series and cluster totals, rendered from the snapshot.

A worker that said goodbye (worker-offline) or stayed silent past --worker-timeout is up 0
and left out of `celery_workers`; its series disappear after --purge-offline-worker-metrics
because the poller drops it from the snapshot; `celery_workers` and `celery_queue_workers`
persist. Host names beyond --max-workers never reach the snapshot: they are counted here.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.state import State


class WorkersCollector(Collector):
    def __init__(self, state: State) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        snap = self._state.snapshot
        workers = sorted(snap.workers.values(), key=lambda w: w.hostname)
        yield GaugeMetricFamily(
            "celery_workers",
            "Workers up: answered the last poll or sent a heartbeat within --worker-timeout, "
            "and sent no worker-offline since.",
            value=sum(1 for w in workers if w.up),
        )
        yield CounterMetricFamily(
            "celery_exporter_workers_dropped",
            "Worker host names not tracked because --max-workers hosts already were: signs of "
            "life refused, plus heartbeat-only hosts evicted for workers that answered inspect "
            "or sent task events.",
            value=self._state.workers.dropped,
        )
        up = GaugeMetricFamily(
            "celery_worker_up",
            "1 if the worker is alive; 0 at once after worker-offline, or after --worker-timeout "
            "of silence (series go after --purge-offline-worker-metrics).",
            labels=["hostname"],
        )
        seen = GaugeMetricFamily(
            "celery_worker_last_seen_timestamp_seconds",
            "When the worker last answered inspect or sent an event (heartbeat, task event, "
            "worker-online or worker-offline).",
            labels=["hostname"],
        )
        per_worker = {
            "active": GaugeMetricFamily(
                "celery_worker_tasks_active", "Tasks the worker is executing.", labels=["hostname"]
            ),
            "reserved": GaugeMetricFamily(
                "celery_worker_tasks_reserved",
                "Tasks the worker has prefetched but not started.",
                labels=["hostname"],
            ),
            "scheduled": GaugeMetricFamily(
                "celery_worker_tasks_scheduled",
                "Tasks with an ETA or countdown the worker holds.",
                labels=["hostname"],
            ),
            "pool_max_concurrency": GaugeMetricFamily(
                "celery_worker_pool_max_concurrency",
                "Pool size limit of the worker.",
                labels=["hostname"],
            ),
            "pool_processes": GaugeMetricFamily(
                "celery_worker_pool_processes", "Pool processes running.", labels=["hostname"]
            ),
        }
        processed = CounterMetricFamily(
            "celery_worker_tasks_processed",
            "Tasks the worker accepted since it started "
            "(inspect stats total; resets when the worker restarts).",
            labels=["hostname"],
        )
        totals = {"active": 0, "reserved": 0, "scheduled": 0}
        for w in workers:
            up.add_metric([w.hostname], 1.0 if w.up else 0.0)
            seen.add_metric([w.hostname], w.last_seen)
            for attr, family in per_worker.items():
                value = getattr(w, attr)
                if value is not None:
                    family.add_metric([w.hostname], value)
                    if attr in totals:
                        totals[attr] += value
            if w.processed is not None:
                processed.add_metric([w.hostname], sum(w.processed.values()))
        yield up
        yield seen
        yield from per_worker.values()
        yield processed
        for attr, help_text in (
            ("active", "Tasks executing on all workers that answered the last poll."),
            ("reserved", "Tasks prefetched by workers (left the broker, not started)."),
            ("scheduled", "Tasks with an ETA/countdown held by workers."),
        ):
            yield GaugeMetricFamily(f"celery_tasks_{attr}", help_text, value=totals[attr])
