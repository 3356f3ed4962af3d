"""`--compat danihodovic`: celery-exporter's families exactly (names, types, label names), its
per-delivery counting, the zero series its alerts rely on, bounds and hostile events, the
option itself, and that the default mode does not change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import cli
from exporter.clock import FakeClock
from exporter.collectors import _collectors, build_registry
from exporter.compat import counts_for
from exporter.compat.counts import WAIT_BUCKETS
from exporter.config import Config, ConfigError
from exporter.decode.compat import host_part
from exporter.keeper.gate import StartGate
from exporter.ledger.hosts import REFERENCE_RUNTIME_BUCKETS, compat_default_queue
from exporter.sources.events import EventsSource
from exporter.state import State
from tests.support.compat_scenario import NoStream

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
TASK = ["hostname", "name", "queue_name"]
# The list: celery-exporter's families, types and label names.
REFERENCE = {
    **{f"celery_task_{s}": ("counter", TASK) for s in
       ("sent", "received", "started", "succeeded", "rejected", "revoked", "retried")},
    "celery_task_failed": ("counter", ["exception", *TASK]),
    "celery_task_runtime": ("histogram", TASK),
    "celery_task_queue_wait_time": ("histogram", TASK),
    "celery_worker_up": ("gauge", ["hostname"]),
    "celery_worker_tasks_active": ("gauge", ["hostname"]),
    "celery_queue_length": ("gauge", ["queue_name"]),
    "celery_active_consumer_count": ("gauge", ["queue_name"]),
    "celery_active_worker_count": ("gauge", ["queue_name"]),
    "celery_active_process_count": ("gauge", ["queue_name"]),
}  # fmt: skip


def families(text: str, prefix: str = "celery_") -> dict[str, tuple[str, list[str]]]:
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith(prefix + "exporter_"):
            continue
        labels = {k for s in family.samples for k in s.labels if k not in ("le", "cluster")}
        out[family.name] = (family.type, sorted(labels))
    return out


def test_golden_families_are_exactly_the_reference_list() -> None:
    busy = families((GOLDEN / "compat" / "busy.prom").read_text())
    assert busy == REFERENCE
    idle = {n for n in families((GOLDEN / "compat" / "idle.prom").read_text())}
    assert idle == set(REFERENCE)  # declared even before the first sample
    named = families((GOLDEN / "compat" / "prefix_static.prom").read_text(), "myapp_")
    assert {n.replace("myapp_", "celery_", 1): v for n, v in named.items()} == REFERENCE


def test_prefix_static_and_generic_hostname_reach_every_compat_series() -> None:
    text = (GOLDEN / "compat" / "prefix_static.prom").read_text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.name.startswith("myapp_") and sample.labels["cluster"] == "eu1"
            if family.name.startswith("myapp_task_"):
                assert sample.labels["hostname"] == "generic", sample


def ev(kind: str, uuid: str, at: float, host: str = "w1@node1", **kw: Any) -> dict[str, Any]:
    return {"type": kind, "uuid": uuid, "hostname": host, "timestamp": at,
            "local_received": at, **kw}  # fmt: skip


def compat_state(**options: Any) -> tuple[State, EventsSource]:
    state = State(Config(compat="danihodovic", **options), FakeClock())
    return state, EventsSource(state, NoStream, StartGate())


def samples(state: State) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The scrape once every effect's --label-grace is over (outcomes are the ledger's)."""
    assert isinstance(state.clock, FakeClock)
    state.clock.advance(state.config.label_grace)
    text = generate_latest(build_registry(state)).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip


def value(state: State, metric: str, **labels: str) -> float | None:
    return samples(state).get((metric, frozenset(labels.items())))


def test_each_delivery_counts_as_in_the_reference() -> None:
    state, src = compat_state()
    now = state.clock.time()
    events = [ev("task-sent", "t1", now, "web@front", name="app.x", queue="q")]
    for attempt in range(3):  # two retries, then a success: three deliveries
        events += [ev("task-received", "t1", now + attempt, name="app.x", retries=attempt),
                   ev("task-started", "t1", now + attempt + 0.1)]  # fmt: skip
        if attempt < 2:
            at = now + attempt + 0.2
            events += [ev("task-retried", "t1", at, exception="Retry('x')"),
                       ev("task-sent", "t1", at, name="app.x", queue="q")]  # fmt: skip
    events.append(ev("task-succeeded", "t1", now + 3, runtime=0.5))
    src.handle_many(events)
    labels = {"name": "app.x", "hostname": "node1", "queue_name": "q"}
    assert value(state, "celery_task_received_total", **labels) == 3
    assert value(state, "celery_task_started_total", **labels) == 3
    assert value(state, "celery_task_retried_total", **labels) == 2
    assert value(state, "celery_task_sent_total", **labels) == 2  # the retries' publishes
    assert value(state, "celery_task_sent_total", **{**labels, "hostname": "front"}) == 1
    assert value(state, "celery_task_succeeded_total", **labels) == 1
    assert value(state, "celery_task_runtime_count", **labels) == 1
    assert value(state, "celery_task_queue_wait_time_count", **labels) == 3
    # The exact ledger beside it is untouched: the task id counts once there.
    assert state.ledger.counts().tasks.get(("app.x", "q", "received")) == 1


def test_a_task_that_only_fails_has_a_zero_success_series() -> None:
    """What celery-mixin's fail-rate alert divides by: failed / (failed + succeeded)."""
    state, src = compat_state()
    now = state.clock.time()
    src.handle_many([ev("task-received", "f1", now, name="app.bad"),
                     ev("task-failed", "f1", now + 1, exception="ValueError('no')")])  # fmt: skip
    labels = {"name": "app.bad", "hostname": "node1", "queue_name": "celery"}
    assert value(state, "celery_task_succeeded_total", **labels) == 0
    assert value(state, "celery_task_failed_total", exception="ValueError", **labels) == 1
    assert value(state, "celery_task_failed_total", exception="", **labels) == 0
    assert value(state, "celery_task_revoked_total", **labels) == 0
    assert value(state, "celery_task_sent_total", **labels) is None  # producers' label sets


def test_buckets_and_default_queue_follow_the_reference_unless_set() -> None:
    state = State(Config(compat="danihodovic"))
    counts, hosts = counts_for(state), state.ledger.host_counts()
    assert counts is not None and hosts is not None
    assert hosts.bounds == REFERENCE_RUNTIME_BUCKETS and counts.wait_bounds == WAIT_BUCKETS
    assert compat_default_queue(Config()) == "celery"
    state = State(Config(compat="danihodovic", buckets=(1.0, 2.0), wait_buckets=(3.0,),
                         default_queue_name="main"))  # fmt: skip
    counts, hosts = counts_for(state), state.ledger.host_counts()
    assert counts is not None and hosts is not None and hosts.bounds == (1.0, 2.0)
    assert counts.wait_bounds == (3.0,) and compat_default_queue(state.config) == "main"


def test_default_mode_has_no_compat_stage() -> None:
    state = State(Config(), FakeClock())
    assert counts_for(state) is None and state.ledger.host_counts() is None
    assert EventsSource(state, NoStream, StartGate())._compat is None
    names = [name for name, _c in _collectors(state)]
    assert names == ["workers", "queues", "exporter", "tasks", "api", "beat"]


def test_labels_are_bounded_and_counted() -> None:
    state, src = compat_state(max_task_names=2, max_workers=2, max_exception_types=1)
    now = state.clock.time()
    src.handle_many(
        [ev("task-received", f"n{i}", now, f"w@h{i % 3}", name=f"app.t{i}", queue=f"q{i}")
         for i in range(5)]
        + [ev("task-failed", f"n{i}", now, exception=f"E{i}('x')") for i in range(3)]
    )  # fmt: skip
    s = samples(state)
    names = {dict(k[1]).get("name") for k in s if k[0] == "celery_task_received_total"}
    hosts = {dict(k[1]).get("hostname") for k in s if k[0] == "celery_task_received_total"}
    # Deliveries and the ledger's outcomes each admit --max-workers hosts (zeros join them).
    assert names == {"app.t0", "app.t1", "other"} and len(hosts) <= 2 * 2 + 1
    assert "other" in hosts
    exceptions = {dict(k[1])["exception"] for k in s if k[0] == "celery_task_failed_total"}
    assert exceptions <= {"", "E0", "other"} and "other" in exceptions
    for label in ("name", "hostname", "queue_name", "exception"):
        assert s[("celery_exporter_compat_label_overflow_total",
                  frozenset({("label", label)}))] > 0, label  # fmt: skip


def test_label_combinations_and_task_memory_are_bounded() -> None:
    state, src = compat_state(max_task_names=1000, max_workers=1000, ledger_max_tasks=8)
    now = state.clock.time()
    src.handle_many([ev("task-received", f"id{i}", now, f"w@h{i}", name=f"t{i % 40}")
                     for i in range(400)])  # fmt: skip
    counts = counts_for(state)
    assert counts is not None
    view = counts.view()
    keys = {k for k in view.counters["received"]}
    assert len(keys) <= 10 * 1000 and view.tasks == 2  # a quarter of --ledger-max-tasks
    # A task id the ledger forgot too: no source names it within the grace.
    src.handle_many([ev("task-succeeded", "id0", now + 1, "w@h0", runtime=1.0)])
    assert value(state, "celery_task_succeeded_total", name="unknown", hostname="h0",
                 queue_name="celery") == 1  # fmt: skip
    small, src2 = compat_state(max_task_names=1)
    src2.handle_many([ev("task-received", f"x{i}", now, f"w@h{i}", name="t") for i in range(30)])
    folded = counts_for(small)
    assert folded is not None
    view = folded.view()
    # 10 x --max-task-names combinations, then everything goes under (other, other, other)
    assert view.overflow["series"] == 20 and len(view.counters["received"]) == 11
    assert view.counters["received"][("other", "other", "other")] == 20


def test_decoders_read_as_the_reference_and_never_raise() -> None:
    assert host_part("celery@web-1") == "web-1" and host_part("gen42@a@b") == "a@b"
    assert host_part("plainhost") == "plainhost"
    assert host_part("w@") is None and host_part(None) is None and host_part(7) is None


JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                 st.text(max_size=40), st.lists(st.integers(), max_size=3))  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "type": st.sampled_from(["task-sent", "task-received", "task-started", "task-succeeded",
                             "task-failed", "task-retried", "task-revoked", "task-rejected"]),
    "uuid": st.one_of(st.sampled_from(["a", "b"]), JUNK),
    "hostname": st.one_of(st.sampled_from(["w@h", "@", "w@", "\ud800@x\x00"]), JUNK),
    "name": JUNK, "queue": JUNK, "timestamp": JUNK, "runtime": JUNK, "eta": JUNK,
    "exception": JUNK,
}), max_size=12))  # fmt: skip
def test_hostile_events_never_raise_and_always_render(events: list[dict[str, Any]]) -> None:
    state, src = compat_state()
    src.handle_many(events)
    text = generate_latest(build_registry(state)).decode()
    assert 'celery_exporter_render_dropped_total{collector="compat"} 0.0' in text
    list(text_string_to_metric_families(text))


def test_compat_option_as_flag_and_variable() -> None:
    assert cli.load_config(["--compat", "danihodovic"], {}).compat == "danihodovic"
    assert cli.load_config([], {"CE_COMPAT": "DaniHodovic"}).compat == "danihodovic"
    assert cli.load_config([], {}).compat == "none"
    assert "CE_COMPAT" not in " ".join(cli.start_warnings(Config(), {"CE_COMPAT": "none"}))
    with pytest.raises(ConfigError, match="--compat must be none or danihodovic"):
        cli.load_config(["--compat", "celery-exporter"], {})


def test_compat_labels_are_reserved_from_static_labels() -> None:
    """--static-label may not take a label name compat mode sets itself."""
    from exporter.naming import RESERVED_LABELS

    used = {
        label
        for path in (GOLDEN / "compat").glob("*.prom")
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
        for label in sample.labels
    }
    assert used - {"cluster"} <= RESERVED_LABELS, used - RESERVED_LABELS
