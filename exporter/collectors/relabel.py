"""`--metric-prefix` and `--static-label`, applied to every family any collector yields.

One wrapper around each collector, so the exporter's own health families are renamed and
labelled like the Celery ones, and no collector has to know about either option. With the
defaults it hands the families through untouched. A `Table` (the per-name task families)
is relabelled as rows, so it stays on the fast writer's path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.families import Table
from exporter.naming import DEFAULT_PREFIX, renamed


class Relabel(Collector):
    def __init__(self, inner: Collector, prefix: str, static: Mapping[str, str]) -> None:
        self._inner = inner
        self._prefix = prefix
        self._static = dict(static)

    def collect(self) -> Iterator[Metric]:
        return relabel(self._inner.collect(), self._prefix, self._static)


def relabel(families: Iterable[Metric], prefix: str, static: Mapping[str, str]) -> Iterator[Metric]:
    for family in families:
        if isinstance(family, Table) and family.rows_only:  # stays rows: the fast writer's
            yield family.relabelled(renamed(family.name, prefix), static)
            continue
        out = Metric(renamed(family.name, prefix), family.documentation, family.type, family.unit)
        out.samples = [
            s._replace(name=renamed(s.name, prefix), labels={**s.labels, **static})
            for s in family.samples
        ]
        yield out


def wrap(inner: Collector, prefix: str, static: Mapping[str, str]) -> Collector:
    """`inner` itself when neither option is set (no per-scrape cost), else the wrapper."""
    if prefix == DEFAULT_PREFIX and not static:
        return inner
    return Relabel(inner, prefix, static)
