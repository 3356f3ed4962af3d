"""The fast exposition writer gives exactly prometheus_client's bytes, in both formats, for
the golden scenarios and for random families (including ones it hands back to the client)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.exposition import choose_encoder

from exporter.clock import FakeClock
from exporter.collectors import build_registry
from exporter.textformat import encoder_for
from tests.unit.test_golden import SCENARIOS

ACCEPTS = [
    "",
    "text/plain; version=0.0.4",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=1.0.0;escaping=dots",  # handed to the client
    "application/openmetrics-text",
]


class Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _same(registry: object) -> None:
    for accept in ACCEPTS:
        client, _ = choose_encoder(accept)
        assert encoder_for(client)(registry) == client(registry), accept  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_scenarios_are_written_byte_for_byte(name: str) -> None:
    _same(build_registry(SCENARIOS[name](FakeClock())))


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # encodable
names = st.sampled_from(["celery_x", "a:b", "x_created", "9bad", "with.dot", "é"])
label_names = st.sampled_from(["name", "queue_name", "le", "9bad", "with.dot", "_x"])
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0.0, -0.0, 1.0, 1e21, 123456789.0]),
)


@st.composite
def families(draw: st.DrawFn) -> list[Metric]:
    out: list[Metric] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["counter", "gauge", "histogram", "summary", "info", "set"]))
        name, doc = draw(names), draw(text)
        labels = draw(st.lists(label_names, max_size=2, unique=True))
        if kind == "histogram":
            labels = [lab for lab in labels if lab != "le"]
        family: Metric
        if kind == "counter":
            family = CounterMetricFamily(name, doc, labels=labels)
        elif kind == "gauge":
            family = GaugeMetricFamily(name, doc, labels=labels)
        elif kind == "histogram":
            family = HistogramMetricFamily(name, doc, labels=labels)
        elif kind == "summary":
            family = SummaryMetricFamily(name, doc, labels=labels)
        elif kind == "info":
            family = InfoMetricFamily(name, doc, labels=labels)
        else:
            family = StateSetMetricFamily(name, doc, labels=labels)
        for _ in range(draw(st.integers(0, 3))):
            lv = [draw(text) for _ in labels]
            v = draw(values)
            if kind in ("counter", "gauge"):
                family.add_metric(lv, v)  # type: ignore[attr-defined]
            elif kind == "histogram":
                n = abs(v) if isinstance(v, int) else 3
                family.add_metric(lv, [("1.0", 1), ("+Inf", n)], 2.5)  # type: ignore[attr-defined]
            elif kind == "summary":
                s = float(v) if math.isfinite(float(v)) else 0.0
                family.add_metric(lv, 4, s)  # type: ignore[attr-defined]
            elif kind == "info":
                family.add_metric(lv, {"version": draw(text)})  # type: ignore[attr-defined]
            else:
                family.add_metric(lv, {"a": True, "b": False})  # type: ignore[attr-defined]
        out.append(family)
    return out


@settings(max_examples=150, deadline=None)
@given(families())
def test_random_families_are_written_byte_for_byte(fams: list[Metric]) -> None:
    registry = Families(fams)
    for accept in ACCEPTS:
        client, _ = choose_encoder(accept)
        try:
            expected = client(registry)  # type: ignore[arg-type]
        except Exception as exc:  # what the client refuses, the writer refuses too
            with pytest.raises(type(exc)):
                encoder_for(client)(registry)  # type: ignore[arg-type]
            continue
        assert encoder_for(client)(registry) == expected, accept  # type: ignore[arg-type]
