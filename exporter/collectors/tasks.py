"""Task metrics from the ledger, plus the health of the sources that feed it.

Renders `celery_task_*` (counters per name and queue, exceptions, runtime and queue-wait
histograms, success ratios over the window, stuck tasks) and the exporter's own source
metrics (`celery_exporter_events_*`, `results_*`, `reconcile_*`, `ledger_*`, `source_*`).
Reads plain state only: a scrape never waits on the broker or Redis.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.collectors.ledger_bounds import ledger_metrics
from exporter.collectors.source_stats import SourceStatsCollector
from exporter.config import Config
from exporter.families import Table
from exporter.ledger import HistogramData, LedgerCounts
from exporter.state import State
from exporter.stuck import stuck_tasks
from exporter.taskdata import COUNTER_FOR_STATE

_COUNTERS = list(dict.fromkeys(COUNTER_FOR_STATE.values()))
_HELP = {
    "sent": "Tasks published (task-sent events; needs task_send_sent_event on producers)",
    "received": "Tasks received by a worker (task-received events)",
    "started": "Tasks started (events, or STARTED results with task_track_started)",
    "succeeded": "Tasks that succeeded, each task id once across all sources",
    "failed": "Tasks that failed, each task id once across all sources",
    "retried": "Task retries; per task the most any source proves, so none counts twice",
    "revoked": "Tasks revoked, each task id once",
    "rejected": "Tasks rejected by a worker (task-rejected events)",
}


class TasksCollector:
    def __init__(self, state: State, own_only: bool = False) -> None:
        self.state = state
        self._sources = SourceStatsCollector(state)
        self._own_only = own_only  # --compat: only the exporter's own source metrics

    def collect(self) -> Iterator[Metric]:
        counts = self.state.ledger.counts()
        if not self._own_only:
            yield from self._task_counters(counts)
            yield from self._histograms(counts)
            yield from self._ratios()
            yield self._stuck(counts)
        yield from self._exporter(counts)

    def _task_counters(self, counts: LedgerCounts) -> Iterator[Metric]:
        with_host = self.state.config.task_worker_label
        labels = ["name", "queue_name", *(["hostname"] if with_host else [])]
        families = {c: Table(f"celery_task_{c}", _HELP[c], "counter", labels) for c in _COUNTERS}
        # Every state counter of a label set seen once exists, at 0 until it moves, so
        # failed / (failed + succeeded) has a value for a task that only fails. The zeros
        # are made here from the label sets, not stored in the ledger.
        table: dict[tuple[str, ...], int] = (
            {(n, q, c, h): v for (n, q, (c, h)), v in _by_host(self.state, counts).items()}
            if with_host
            else {(n, q, c): v for (n, q, c), v in counts.tasks.items()}
        )
        label_sets = {(k[0], k[1], *k[3:]) for k in table}
        if not with_host:
            label_sets.update(counts.runtime)
            label_sets.update(counts.queue_wait)
        cfg = self.state.config
        switched = with_host and (
            cfg.generic_hostname_task_sent_metric or cfg.generic_hostname_worker_task_metric
        )
        for key in sorted(label_sets):
            name, queue, *host = key
            for c in _COUNTERS:
                if switched and not _host_fits(cfg, c, host[0]):
                    continue  # hostname="generic" only where the switch puts it, as counted
                families[c].add_metric(key, table.get((name, queue, c, *host), 0))
        yield from families.values()
        exc = Table(
            "celery_task_exceptions",
            'Task failures by exception type (folded into exception="other" past '
            "--max-exception-types)",
            "counter",
            ["name", "exception"],
        )
        for key, value in sorted(counts.exceptions.items()):
            exc.add_metric(key, value)
        yield exc

    def _histograms(self, counts: LedgerCounts) -> Iterator[Metric]:
        pairs = {(n, q) for n, q, _c in counts.tasks} | set(counts.runtime) | set(counts.queue_wait)
        config = self.state.config
        empty = {
            "celery_task_runtime_seconds": _empty(config.buckets),
            "celery_task_queue_wait_seconds": _empty(config.wait_buckets),
        }
        for metric, table, help_text in (
            (
                "celery_task_runtime_seconds",
                counts.runtime,
                "Task runtime in seconds (events' runtime; pub/sub receive times without events)",
            ),
            (
                "celery_task_queue_wait_seconds",
                counts.queue_wait,
                "Seconds from task-sent (or the ETA, if later) to task-started",
            ),
        ):
            family = Table(metric, help_text, "histogram", ["name", "queue_name"])
            # An empty histogram (zero buckets) for every pair the counters know, so that
            # its _count exists before the first observation.
            les: dict[tuple[tuple[float, ...], int], tuple[str, ...]] = {}
            for key in sorted(pairs):
                data = table.get(key) or empty[metric]
                shape = (data.bounds, len(data.cumulative))
                texts = les.get(shape)
                if texts is None:
                    texts = les[shape] = _les(data)
                cumulative = (*data.cumulative[: len(texts) - 1], data.count)
                family.add_histogram(key, texts, cumulative, data.sum)
            yield family

    def _ratios(self) -> Iterator[Metric]:
        ledger = self.state.ledger
        window = ledger.window
        totals = ledger.success_ratio()
        per_name = Table(
            "celery_task_success_ratio",
            f"Succeeded / (succeeded + failed) per task name over the last {window:g} s "
            "(--success-window); absent when no task finished in the window",
            "gauge",
            ["name"],
        )
        overall = GaugeMetricFamily(
            "celery_tasks_success_ratio",
            f"Succeeded / (succeeded + failed) of all tasks over the last {window:g} s "
            "(--success-window); absent when no task finished in the window",
        )
        for name, (ok, bad) in sorted(totals.items()):
            if ok + bad == 0:
                continue
            if name == "":
                overall.add_metric([], ok / (ok + bad))
            else:
                per_name.add_metric((name,), ok / (ok + bad))
        yield per_name
        yield overall

    def _stuck(self, counts: LedgerCounts) -> Metric:
        """Tasks running longer than --stuck-after (the rule is `exporter.stuck`)."""
        limit = self.state.config.stuck_after
        known = {name for name, _q, _c in counts.tasks}
        stuck: dict[str, int] = {}
        ledger = self.state.ledger
        for task in stuck_tasks(ledger, self.state.snapshot, self.state.clock.time(), limit):
            label = task.name if task.name in known else ledger.name_label(task.name)
            stuck[label] = stuck.get(label, 0) + 1
        family = GaugeMetricFamily(
            "celery_tasks_stuck",
            f"Tasks running longer than {limit:g} s (--stuck-after), from events, "
            "STARTED results and inspect active()",
            labels=["name"],
        )
        for name, value in sorted(stuck.items()):
            family.add_metric([name], value)
        return family

    def _exporter(self, counts: LedgerCounts) -> Iterator[Metric]:
        """The sources' statistics, the ledger's bounds, then the "-E is off" check."""
        health = self.state.source_health()
        yield from self._sources.health_metrics(health)
        yield from ledger_metrics(counts)
        yield from self._sources.events_check_metric(health)


def _by_host(state: State, counts: LedgerCounts) -> dict[tuple[str, str, tuple[str, str]], int]:
    """Task counters by worker, with celery-exporter's switches: hostname="generic" on
    `sent` (--generic-hostname-task-sent-metric) or on the others (...-worker-task-metric)."""
    cfg = state.config
    out: dict[tuple[str, str, tuple[str, str]], int] = {}
    for (name, queue, counter, host), value in sorted(counts.tasks_by_worker.items()):
        generic = (cfg.generic_hostname_task_sent_metric if counter == "sent"
                   else cfg.generic_hostname_worker_task_metric)  # fmt: skip
        key = (name, queue, (counter, "generic" if generic else host))
        out[key] = out.get(key, 0) + value
    return out


def _host_fits(cfg: Config, counter: str, host: str) -> bool:
    generic = (cfg.generic_hostname_task_sent_metric if counter == "sent"
               else cfg.generic_hostname_worker_task_metric)  # fmt: skip
    return (host == "generic") == generic


def _empty(bounds: tuple[float, ...]) -> HistogramData:
    return HistogramData(tuple(bounds), (0,) * (len(bounds) + 1), 0.0)


def _les(data: HistogramData) -> tuple[str, ...]:
    """The `le` texts of these bounds, "+Inf" last (the bounds zipped with the counts, as
    the buckets always were)."""
    bounds = data.bounds[: max(0, len(data.cumulative))]
    return (*(_le(b) for b in bounds), "+Inf")


def _le(bound: float) -> str:
    return repr(float(bound))
