"""Defensive rendering: one sample (or one collector) that cannot be rendered never costs the page.

prometheus_client renders a whole page or raises: one label value holding a lone surrogate
(not encodable as UTF-8), a non-string label or a value that is not a number turned every
scrape into a 500. `SafeCollector` wraps each collector: a sample that could not be rendered
is left out, a collector that raises contributes nothing, and both are counted in
`celery_exporter_render_dropped_total{collector}`, with one log line per collector per
LOG_EVERY seconds. The decoders (exporter.decode) clean what comes in, so a drop here means
a path they missed: the counter says so instead of a blank page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.families import Table

log = logging.getLogger(__name__)
LOG_EVERY = 300.0


class RenderDrops:
    """Counts of dropped samples per collector, shared by the wrappers and their report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self._logged: dict[str, float] = {}

    def add(self, collector: str, n: int, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts[collector] = self.counts.get(collector, 0) + n
            last = self._logged.get(collector)
            if last is not None and now - last < LOG_EVERY:
                return
            self._logged[collector] = now
        log.warning("/metrics: left out %d sample(s) of collector %s: %s", n, collector, why)


class SafeCollector:
    """Renders what `inner` yields sample by sample checked; never raises."""

    def __init__(self, name: str, inner: Collector, drops: RenderDrops) -> None:
        self.name = name
        self._inner = inner
        self._drops = drops

    def describe(self) -> list[Metric]:
        """The families, for the registry's name check at registration: not a scrape, so
        nothing is counted (auto_describe would otherwise call collect)."""
        try:
            describe = getattr(self._inner, "describe", None)
            return list(describe() if describe is not None else self._inner.collect())
        except Exception:
            return []

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(self._inner.collect())
        except Exception as exc:  # one collector's failure must not blank the page
            self._drops.add(self.name, 1, f"the collector failed: {type(exc).__name__}: {exc}")
            return
        for family in families:
            if isinstance(family, Table) and family.renderable():
                yield family  # checked row by row: its samples need not be made
                continue
            kept = [s for s in family.samples if _renderable(s)]
            if len(kept) != len(family.samples):
                self._drops.add(
                    self.name,
                    len(family.samples) - len(kept),
                    f"{family.name}: a label that is not valid UTF-8 text or a non-number",
                )
                family.samples = kept
            yield family


class DropsCollector:
    """Reports `celery_exporter_render_dropped_total`; registered after every other one, so a
    scrape's own drops are already in it."""

    def __init__(self, drops: RenderDrops, names: list[str]) -> None:
        self._drops = drops
        self._names = names

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "celery_exporter_render_dropped",
            "Samples left out of /metrics as they could not be rendered (a label that is not "
            "valid UTF-8 text, a non-number; 1 per failed collector); the rest is served",
            labels=["collector"],
        )
        counts = dict(self._drops.counts)
        for name in self._names:
            family.add_metric([name], counts.get(name, 0))
        yield family


def _renderable(sample: Any) -> bool:
    try:
        for key, value in sample.labels.items():
            if value.__class__ is not str or key.__class__ is not str:
                return False
            if not value.isascii():
                value.encode("utf-8")
        float(sample.value)
    except (UnicodeEncodeError, TypeError, ValueError, AttributeError, OverflowError):
        return False
    return True
