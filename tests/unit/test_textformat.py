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
from exporter.config import Config
from exporter.families import Table
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


label_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
table_labels = st.lists(st.sampled_from(["name", "queue_name", "a", "zz", "hostname"]),
                        max_size=3, unique=True)  # fmt: skip


@st.composite
def tables(draw: st.DrawFn) -> tuple[Table, Metric]:
    """A `Table` and the prometheus_client family the collectors built before, same rows."""
    kind = draw(st.sampled_from(["counter", "gauge", "histogram"]))
    labels = draw(table_labels)
    name = draw(st.sampled_from(["celery_x", "celery_y_total"]))
    table = Table(name, "doc \\ with\nnewline", kind, labels)
    client: Metric
    if kind == "counter":
        client = CounterMetricFamily(name, "doc \\ with\nnewline", labels=labels)
    elif kind == "gauge":
        client = GaugeMetricFamily(name, "doc \\ with\nnewline", labels=labels)
    else:
        client = HistogramMetricFamily(name, "doc \\ with\nnewline", labels=labels)
    bounds = draw(st.sampled_from([(), (0.5,), (-1.0, 2.0), (0.005, 0.1, 1e21)]))
    les = (*(repr(b) for b in bounds), "+Inf")
    for _ in range(draw(st.integers(0, 3))):
        lv = [draw(label_values) for _ in labels]
        if kind == "histogram":
            counts = sorted(draw(st.lists(st.integers(0, 2**40), min_size=len(les),
                                          max_size=len(les))))  # fmt: skip
            total = draw(st.floats(0, 1e9))
            table.add_histogram(lv, les, counts, total)
            client.add_metric(
                lv, [(le, float(c)) for le, c in zip(les, counts, strict=True)], total
            )  # type: ignore[attr-defined]
        else:
            value = draw(values)
            table.add_metric(lv, value)
            client.add_metric(lv, value)  # type: ignore[attr-defined]
    return table, client


@settings(max_examples=200, deadline=None)
@given(tables())
def test_tables_are_written_as_the_client_writes_their_families(pair: tuple[Table, Metric]) -> None:
    table, client_family = pair
    for accept in ACCEPTS:
        client, _ = choose_encoder(accept)
        expected = client(Families([client_family]))  # type: ignore[arg-type]
        # a fresh writer per format, as the exposition keeps: caches start empty
        assert encoder_for(client)(Families([table])) == expected, accept  # type: ignore[arg-type]
    assert table.samples == client_family.samples  # made on demand, the same samples
    assert table.renderable() is False  # once the samples are made, they are the truth


@settings(max_examples=100, deadline=None)
@given(
    tables(), st.dictionaries(st.sampled_from(["cluster", "zone", "a"]), label_values, max_size=2)
)
def test_relabelled_tables_are_what_the_relabel_wrapper_makes_of_samples(
    pair: tuple[Table, Metric], static: dict[str, str]
) -> None:
    from exporter.collectors.relabel import relabel

    table, client_family = pair
    (expected,) = relabel([client_family], "acme_", static)
    (got,) = relabel([table], "acme_", static)
    assert isinstance(got, Table) and got.rows_only and got.name == expected.name
    for accept in ACCEPTS:
        client, _ = choose_encoder(accept)
        want = client(Families([expected]))  # type: ignore[arg-type]
        assert encoder_for(client)(Families([got])) == want, accept  # type: ignore[arg-type]
    assert got.samples == expected.samples


def test_a_table_whose_samples_were_set_is_written_from_them() -> None:
    table = Table("celery_x", "doc", "counter", ["name"])
    table.add_metric(["a"], 1)
    table.add_metric(["b"], 2)
    table.samples = table.samples[1:]  # what the safe wrapper does after a drop
    text, _ = choose_encoder("")
    assert encoder_for(text)(Families([table])) == (  # type: ignore[arg-type]
        b'# HELP celery_x_total doc\n# TYPE celery_x_total counter\ncelery_x_total{name="b"} 2.0\n'
    )
    with pytest.raises(ValueError):
        table.add_metric(["c"], 3)  # would be missing from the samples set


def test_a_table_with_an_unencodable_label_is_left_to_the_sample_check() -> None:
    table = Table("celery_x", "doc", "histogram", ["name"])
    table.add_histogram(["ok"], ("1.0", "+Inf"), (1, 2), 3.0)
    assert table.renderable()
    table = Table("celery_x", "doc", "counter", ["name"])
    table.add_metric(["bad \ud800"], 1)
    assert not table.renderable()
    table = Table("celery_x", "doc", "gauge", ["name"])
    table.add_metric(["ok"], "not a number")  # type: ignore[arg-type]
    assert not table.renderable()


def test_the_per_pair_task_families_reach_the_writer_as_rows() -> None:
    """Nothing between the tasks collector and the writer (the safe wrapper, the registry)
    makes their Samples: that is what keeps a 1,000-name render at ~0.1 s."""
    from exporter.state import State
    from exporter.taskdata import SUCCESS, TaskUpdate

    state = State(Config(), FakeClock())
    state.ledger.apply_many(
        TaskUpdate(f"t{i}", SUCCESS, "events", 1.7e9, f"app.t{i % 7}", f"q{i % 3}", runtime=0.1)
        for i in range(40)
    )
    state.clock.advance(30)  # past --label-grace
    families = {f.name: f for f in build_registry(state).collect()}
    for name in ("celery_task_succeeded", "celery_task_runtime_seconds",
                 "celery_task_queue_wait_seconds", "celery_task_success_ratio"):  # fmt: skip
        family = families[name]
        assert isinstance(family, Table) and family.rows_only, name
