"""Collectors: each renders plain state (snapshot, ledger) into metric families on a scrape.

One module per collector, named as its `--collector` would be; none does I/O.
"""

from __future__ import annotations

from prometheus_client.registry import Collector, CollectorRegistry

from exporter.state import State


def build_registry(state: State) -> CollectorRegistry:
    """A private registry with every collector; nothing from the process-global default."""
    from exporter.collectors.relabel import wrap

    registry = CollectorRegistry(auto_describe=True)
    cfg = state.config
    for collector in _collectors(state):
        registry.register(wrap(collector, cfg.metric_prefix, cfg.static_labels))
    return registry


def _collectors(state: State) -> list[Collector]:
    from exporter.collectors import api, beat, queues, tasks, workers
    from exporter.collectors import exporter as exporter_c

    return [
        workers.WorkersCollector(state),
        queues.QueuesCollector(state),
        exporter_c.ExporterCollector(state),
        tasks.TasksCollector(state),
        api.ApiCollector(state),
        beat.BeatCollector(state),
    ]
