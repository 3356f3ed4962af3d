"""The exporter's own metrics about the task sources and the ledger's bounds.

Sources publish their counters into `State` source health (`SourceHealth.detail`, keys like
`events:task-succeeded`, `skipped:pickle`, `parse_errors`, `keys_scanned`); this module only
renders them.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.ledger import LedgerCounts
from exporter.state import State
from exporter.taskstate import SOURCE_EVENTS, SOURCE_PUBSUB, SOURCE_RECONCILE

_RESULT_SOURCES = (SOURCE_PUBSUB, SOURCE_RECONCILE)
_TASK_SOURCES = (SOURCE_EVENTS, SOURCE_PUBSUB, SOURCE_RECONCILE)


def source_metrics(state: State, counts: LedgerCounts) -> Iterator[Metric]:
    health = state.source_health()
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
        "content is never decoded; other_db: published by another database of the same server)",
        labels=["source", "reason"],
    )
    parse_errors = CounterMetricFamily(
        "celery_exporter_parse_errors",
        "Results or events that could not be parsed, by source",
        labels=["source"],
    )
    up = GaugeMetricFamily(
        "celery_exporter_source_up",
        "1 when the task source is connected (events, pubsub) or its last run worked (reconcile)",
        labels=["source"],
    )
    last = GaugeMetricFamily(
        "celery_exporter_source_last_message_timestamp_seconds",
        "When the task source last heard something, Unix seconds",
        labels=["source"],
    )
    for name in _TASK_SOURCES:
        h = health.get(name)
        if h is None or not h.enabled:
            continue
        detail = h.detail
        up.add_metric([name], 1.0 if h.up else 0.0)
        if h.last_message_at is not None:
            last.add_metric([name], h.last_message_at)
        parse_errors.add_metric([name], detail.get("parse_errors", 0.0))
        if name == SOURCE_EVENTS:
            for key, value in sorted(detail.items()):
                if key.startswith("events:"):
                    events.add_metric([key[7:]], value)
        else:
            received.add_metric([name], float(h.messages_total))
        # events: messages the lean Redis consumer did not decode (pickle, not JSON)
        for key, value in sorted(detail.items()):
            if key.startswith("skipped:"):
                skipped.add_metric([name, key[8:]], value)
    yield from (events, received, skipped, parse_errors, up, last)
    yield from _reconcile(health.get(SOURCE_RECONCILE))
    yield from _ledger(counts)
    ev = health.get(SOURCE_EVENTS)
    if ev is not None and ev.enabled:
        yield _gauge(
            "celery_exporter_task_events_enabled",
            "0 when a worker processed tasks (its heartbeats say so) but sent no task events: "
            "start workers with -E or use --enable-events-interval",
            ev.detail.get("task_events_enabled", 1.0),
        )


def _reconcile(h: object) -> Iterator[Metric]:
    detail = getattr(h, "detail", None)
    if detail is None:
        return
    runs = CounterMetricFamily("celery_exporter_reconcile_runs", "Completed reconcile passes")
    runs.add_metric([], detail.get("runs", 0.0))
    yield runs
    if "last_duration_seconds" in detail:
        yield _gauge(
            "celery_exporter_reconcile_duration_seconds",
            "Duration of the last completed reconcile pass",
            detail["last_duration_seconds"],
        )
    keys = CounterMetricFamily(
        "celery_exporter_reconcile_keys_scanned", "Result keys SCAN returned to reconcile passes"
    )
    keys.add_metric([], detail.get("keys_scanned", 0.0))
    yield keys


def _ledger(counts: LedgerCounts) -> Iterator[Metric]:
    yield _gauge(
        "celery_exporter_ledger_entries",
        "Task ids the ledger remembers (bounded by --ledger-max-tasks)",
        counts.entries,
    )
    evictions = CounterMetricFamily(
        "celery_exporter_ledger_evictions",
        "Task ids forgotten to stay within --ledger-max-tasks",
    )
    evictions.add_metric([], counts.evictions)
    yield evictions
    yield _gauge(
        "celery_exporter_ledger_evicted_ids",
        "Evicted task ids remembered until a completed reconcile covers them, so that the "
        "reconcile cannot count them again (bounded by half of --ledger-max-tasks)",
        counts.evicted_ids,
    )
    dropped = CounterMetricFamily(
        "celery_exporter_ledger_evicted_ids_dropped",
        "Evicted task ids forgotten before a completed reconcile covered them; a reconcile "
        "that finds their results again counts them again (raise --ledger-max-tasks)",
    )
    dropped.add_metric([], counts.evicted_ids_dropped)
    yield dropped
    unattributed = CounterMetricFamily(
        "celery_exporter_tasks_unattributed",
        'Tasks no source named within --label-grace: their counts went under name="unknown"',
    )
    unattributed.add_metric([], counts.unattributed)
    yield unattributed
    yield _gauge(
        "celery_exporter_label_pending_tasks",
        "Tasks whose counts wait (up to --label-grace) for a source to name their task or queue "
        "(bounded by a quarter of --ledger-max-tasks)",
        counts.label_pending,
    )
    early = CounterMetricFamily(
        "celery_exporter_label_pending_overflow",
        "Tasks whose counts were labelled before --label-grace ended, because a quarter of "
        "--ledger-max-tasks were waiting (or the task was evicted); unknown labels may result",
    )
    early.add_metric([], counts.label_overflow)
    yield early
    overflow = CounterMetricFamily(
        "celery_exporter_label_overflow",
        'Observations whose label value was folded into "other" (past --max-task-names or '
        "--max-exception-types), by label",
        labels=["label"],
    )
    for label, value in sorted(counts.overflow.items()):
        overflow.add_metric([label], value)
    yield overflow


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text)
    family.add_metric([], value)
    return family
