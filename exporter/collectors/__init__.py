"""Collectors: each renders plain state (snapshot, ledger) into metric families on a scrape.

One module per collector, named as its `--collector` would be; none does I/O. Each is
wrapped in `safe.SafeCollector`, so a sample that cannot be rendered is dropped and counted
rather than failing the page.
"""

from __future__ import annotations

from prometheus_client.registry import Collector, CollectorRegistry

from exporter.state import State


def build_registry(state: State) -> CollectorRegistry:
    """A private registry with every collector; nothing from the process-global default."""
    from exporter.collectors.safe import DropsCollector, RenderDrops, SafeCollector

    registry = CollectorRegistry(auto_describe=True)
    drops = RenderDrops()
    named = _collectors(state)
    for name, collector in named:
        registry.register(SafeCollector(name, collector, drops))
    registry.register(DropsCollector(drops, [name for name, _ in named]))
    return registry


def _collectors(state: State) -> list[tuple[str, Collector]]:
    from exporter.collectors import api, queues, tasks, workers
    from exporter.collectors import exporter as exporter_c

    return [
        ("workers", workers.WorkersCollector(state)),
        ("queues", queues.QueuesCollector(state)),
        ("exporter", exporter_c.ExporterCollector(state)),
        ("tasks", tasks.TasksCollector(state)),
        ("api", api.ApiCollector(state)),
    ]
