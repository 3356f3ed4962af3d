"""Read an exporter's /metrics as Prometheus would (prometheus_client's parser) into samples
keyed by (name, labels), and sum them by name and label subset."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(m: Samples, metric: str, /, **labels: str) -> float:
    """Sum of the samples of `metric` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lab), v in m.items() if n == metric and want <= lab)
