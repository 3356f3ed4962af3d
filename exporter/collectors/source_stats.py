"""The exporter's own metrics about the task sources, read from their typed statistics.

Sources publish `SourceStatistics` (events by type, skips by reason, parse errors, reconcile
runs and keys) in their `SourceHealth` (state.py); this collector renders those fields and
the sources' up/last-message gauges. It is registered inside the tasks collector (its
families keep their place on the page; `health_metrics` and `events_check_metric` are the
two halves, around the ledger's bound metrics), and can be collected on its own.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.state import SourceHealth, State
from exporter.taskdata import SOURCE_EVENTS, SOURCE_PUBSUB, SOURCE_RECONCILE

TASK_SOURCES = (SOURCE_EVENTS, SOURCE_PUBSUB, SOURCE_RECONCILE)


class SourceStatsCollector:
    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        health = self.state.source_health()
        yield from self.health_metrics(health)
        yield from self.events_check_metric(health)

    def health_metrics(self, health: dict[str, SourceHealth]) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "celery_exporter_events_received", "Celery events received, by type", labels=["type"]
        )
        received = CounterMetricFamily(
            "celery_exporter_results_received",
            "Task results read from the result backend, by source (pubsub, reconcile)",
            labels=["source"],
        )
        skipped = CounterMetricFamily(
            "celery_exporter_results_skipped",
            "Results (and events) not counted, by source and reason (pickle and other non-JSON "
            "content is never decoded; other_db: published by another database of the same "
            "server)",
            labels=["source", "reason"],
        )
        parse_errors = CounterMetricFamily(
            "celery_exporter_parse_errors",
            "Results or events that could not be parsed, by source",
            labels=["source"],
        )
        up = GaugeMetricFamily(
            "celery_exporter_source_up",
            "1 when the task source is connected (events, pubsub) or its last run worked "
            "(reconcile)",
            labels=["source"],
        )
        last = GaugeMetricFamily(
            "celery_exporter_source_last_message_timestamp_seconds",
            "When the task source last heard something, Unix seconds",
            labels=["source"],
        )
        for name in TASK_SOURCES:
            h = health.get(name)
            if h is None or not h.enabled:
                continue
            stats = h.stats
            up.add_metric([name], 1.0 if h.up else 0.0)
            if h.last_message_at is not None:
                last.add_metric([name], h.last_message_at)
            parse_errors.add_metric([name], float(stats.parse_errors))
            if name == SOURCE_EVENTS:
                for kind, n in sorted(stats.events.items()):
                    events.add_metric([kind], float(n))
            else:
                received.add_metric([name], float(h.messages_total))
            # events: messages the lean Redis consumer did not decode (pickle, not JSON)
            for reason, n in sorted(stats.skipped.items()):
                skipped.add_metric([name, reason], float(n))
        yield from (events, received, skipped, parse_errors, up, last)
        yield from _reconcile(health.get(SOURCE_RECONCILE))

    def events_check_metric(self, health: dict[str, SourceHealth]) -> Iterator[Metric]:
        ev = health.get(SOURCE_EVENTS)
        if ev is not None and ev.enabled:
            yield _gauge(
                "celery_exporter_task_events_enabled",
                "0 when a worker processed tasks (its heartbeats say so) but sent no task "
                "events: start workers with -E or use --enable-events-interval",
                1.0 if ev.stats.task_events_enabled else 0.0,
            )


def _reconcile(h: SourceHealth | None) -> Iterator[Metric]:
    if h is None:
        return
    stats = h.stats
    runs = CounterMetricFamily("celery_exporter_reconcile_runs", "Completed reconcile passes")
    runs.add_metric([], float(stats.runs))
    yield runs
    if stats.last_duration_seconds is not None:
        yield _gauge(
            "celery_exporter_reconcile_duration_seconds",
            "Duration of the last completed reconcile pass",
            stats.last_duration_seconds,
        )
    keys = CounterMetricFamily(
        "celery_exporter_reconcile_keys_scanned", "Result keys SCAN returned to reconcile passes"
    )
    keys.add_metric([], float(stats.keys_scanned))
    yield keys


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text)
    family.add_metric([], value)
    return family
