"""Collectors: each renders plain state (snapshot, ledger) into metric families on a scrape.

One module per collector, named as its `--collector` would be; none does I/O. Each is
wrapped in `safe.SafeCollector`, so a sample that cannot be rendered is dropped and counted
rather than failing the page.
"""

from __future__ import annotations

from prometheus_client.registry import Collector, CollectorRegistry

from exporter.collectors import api, beat, queues, self_metrics, tasks, workers
from exporter.collectors.compat import CompatCollector, OwnOnly
from exporter.collectors.relabel import wrap
from exporter.collectors.safe import DropsCollector, RenderDrops, SafeCollector
from exporter.compat import enabled
from exporter.state import State


def build_registry(state: State) -> CollectorRegistry:
    """A private registry with every collector; nothing from the process-global default."""
    registry = CollectorRegistry(auto_describe=True)
    cfg = state.config
    drops = RenderDrops()
    named = _collectors(state)
    # Safe inside, relabel outside: a drop is counted under the collector's own name, and
    # every family (the drop counter's too) gets --metric-prefix and --static-label.
    for name, collector in named:
        safe = SafeCollector(name, collector, drops)
        registry.register(wrap(safe, cfg.metric_prefix, cfg.static_labels))
    drops_c = DropsCollector(drops, [name for name, _ in named])
    registry.register(wrap(drops_c, cfg.metric_prefix, cfg.static_labels))
    return registry


def _collectors(state: State) -> list[tuple[str, Collector]]:
    """(--collector name, collector); the names label celery_exporter_render_dropped_total."""
    if enabled(state):
        # --compat danihodovic: celery-exporter's task, worker and queue families instead of
        # ours (same names, other meanings: both cannot be served); our health families stay.
        return [
            ("compat", CompatCollector(state)),
            ("workers", OwnOnly(workers.WorkersCollector(state))),
            ("exporter", self_metrics.SelfMetricsCollector(state)),
            ("tasks", tasks.TasksCollector(state, own_only=True)),
            ("api", api.ApiCollector(state)),
            ("beat", beat.BeatCollector(state)),
        ]
    return [
        ("workers", workers.WorkersCollector(state)),
        ("queues", queues.QueuesCollector(state)),
        ("exporter", self_metrics.SelfMetricsCollector(state)),
        ("tasks", tasks.TasksCollector(state)),
        ("api", api.ApiCollector(state)),
        ("beat", beat.BeatCollector(state)),
    ]
