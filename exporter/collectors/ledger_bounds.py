"""The exporter's own metrics about the ledger's bounds: entries, evictions, evicted ids,
labels waiting for a name and label values folded into "other" (from `LedgerCounts`)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.ledger import LedgerCounts


def ledger_metrics(counts: LedgerCounts) -> Iterator[Metric]:
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
