"""Collector `exporter` (self_metrics.py, so not confused with the package `exporter`): the
exporter's own health, so a stale number is never mistaken."""

from __future__ import annotations

import platform
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.state import State


class SelfMetricsCollector(Collector):
    def __init__(self, state: State) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        snap = self._state.snapshot
        health = snap.health
        info = GaugeMetricFamily(
            "celery_exporter_build_info",
            "Exporter version, always 1.",
            labels=["version", "python"],
        )
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        yield GaugeMetricFamily(
            "celery_exporter_up",
            "1 if the last poll reached the broker, else 0.",
            value=1 if health.broker_up else 0,
        )
        if health.duration is not None:
            yield GaugeMetricFamily(
                "celery_exporter_poll_duration_seconds",
                "How long the last poll took.",
                value=health.duration,
            )
        if health.last_success is not None:
            yield GaugeMetricFamily(
                "celery_exporter_last_successful_poll_timestamp_seconds",
                "When the last poll that reached the broker finished.",
                value=health.last_success,
            )
            yield GaugeMetricFamily(
                "celery_exporter_snapshot_age_seconds",
                "Age of the worker and queue values served (grows while the broker is down).",
                value=max(0.0, self._state.clock.time() - health.last_success),
            )
        yield CounterMetricFamily(
            "celery_exporter_polls", "Cluster polls started.", value=health.polls_total
        )
        yield CounterMetricFamily(
            "celery_exporter_poll_errors",
            "Polls that failed to reach the broker.",
            value=health.errors_total,
        )
        timeouts = CounterMetricFamily(
            "celery_exporter_inspect_timeouts",
            "Inspect broadcasts no worker answered in time.",
            labels=["method"],
        )
        for method in ("stats", "active_queues", "active", "reserved", "scheduled"):
            timeouts.add_metric([method], health.inspect_timeouts_total.get(method, 0))
        yield timeouts
        yield CounterMetricFamily(
            "celery_exporter_inspect_reply_dropped",
            "Parts of inspect replies dropped as malformed (hosts, queues, requests, counts "
            "that are not what a Celery worker sends).",
            value=health.inspect_dropped_total,
        )
