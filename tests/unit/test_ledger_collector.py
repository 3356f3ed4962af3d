"""The tasks collector renders the contract's metric names from ledger and source state."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.clock import FakeClock
from exporter.collectors.tasks import TasksCollector
from exporter.config import Config
from exporter.keeper.gate import StartGate
from exporter.snapshot import RunningTask, Snapshot, WorkerSnapshot
from exporter.sources.results import ResultsSource
from exporter.state import State
from exporter.taskdata import FAILURE, SENT, STARTED, SUCCESS, TaskUpdate


def scrape(state: State) -> str:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(TasksCollector(state))
    return generate_latest(registry).decode()


def test_metrics_follow_the_contract() -> None:
    clock = FakeClock(10_000.0)
    state = State(Config(success_window=120, stuck_after=60, buckets=(1.0, 5.0)), clock=clock)
    led = state.ledger
    led.apply(TaskUpdate("a", SENT, "events", name="t.add", queue="q", timestamp=9990.0))
    led.apply(TaskUpdate("a", STARTED, "events", timestamp=9995.0))
    led.apply(TaskUpdate("a", SUCCESS, "events", runtime=0.5))
    led.apply(TaskUpdate("b", FAILURE, "pubsub", name="t.add", exception_type="KeyError"))
    led.apply(TaskUpdate("c", STARTED, "events", name="t.slow", timestamp=9000.0))
    state.set_snapshot(
        Snapshot(
            taken_at=clock.time(),
            workers={
                "w": WorkerSnapshot(
                    "w", True, clock.time(), running=(RunningTask("d", "t.add", "w", "q", 9100.0),)
                )
            },
        )
    )
    ResultsSource(state, lambda: None, StartGate()).handle([(b"celery-task-meta-x", b"\x80\x04.")])
    clock.advance(state.config.label_grace)  # "b" has no queue: it waits out the grace
    text = scrape(state)
    assert 'celery_task_succeeded_total{name="t.add",queue_name="q"} 1.0' in text
    assert 'celery_task_failed_total{name="t.add",queue_name="unknown"} 1.0' in text
    assert 'celery_task_exceptions_total{exception="KeyError",name="t.add"} 1.0' in text
    assert 'celery_task_runtime_seconds_bucket{le="1.0",name="t.add",queue_name="q"} 1.0' in text
    assert 'celery_task_queue_wait_seconds_sum{name="t.add",queue_name="q"} 5.0' in text
    assert "over the last 120 s" in text
    assert 'celery_task_success_ratio{name="t.add"} 0.5' in text
    assert "celery_tasks_success_ratio 0.5" in text
    assert 'celery_tasks_stuck{name="t.slow"} 1.0' in text
    assert 'celery_tasks_stuck{name="t.add"} 1.0' in text  # seen only by inspect
    assert 'celery_exporter_results_skipped_total{reason="pickle",source="pubsub"} 1.0' in text
    assert 'celery_exporter_results_received_total{source="pubsub"} 1.0' in text
    assert "celery_exporter_ledger_entries 3.0" in text
    assert 'celery_exporter_label_overflow_total{label="name"} 0.0' in text
    if shutil.which("promtool"):
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=text.encode(), capture_output=True
        )
        assert b"error" not in check.stderr.lower(), check.stderr.decode()


def test_worker_label_is_opt_in() -> None:
    clock = FakeClock()
    state = State(Config(task_worker_label=True), clock=clock)
    state.ledger.apply(TaskUpdate("a", SUCCESS, "events", name="t", worker="w1@h"))
    clock.advance(state.config.label_grace)  # no queue named: the default after the grace
    assert 'celery_task_succeeded_total{hostname="w1@h",name="t",queue_name="unknown"} 1.0' in (
        scrape(state)
    )


@pytest.mark.parametrize("events", [True, False])
def test_task_events_enabled_only_with_events_source(events: bool) -> None:
    from exporter.sources.events import EventsSource

    state = State(Config(events=events), clock=FakeClock())
    if events:
        EventsSource(state, lambda h, s, b: None, StartGate()).flush()
    assert ("celery_exporter_task_events_enabled 1.0" in scrape(state)) is events


def test_every_state_series_exists_at_zero_once_its_labels_are_seen() -> None:
    """failed / (failed + succeeded) needs a succeeded series for a task that only fails."""
    clock = FakeClock()
    state = State(Config(max_task_names=1, label_grace=0), clock=clock)
    state.ledger.apply(TaskUpdate("a", FAILURE, "pubsub", name="t.bad", queue="q"))
    state.ledger.apply(TaskUpdate("b", SUCCESS, "pubsub", name="t.folded", queue="q"))
    text = scrape(state)
    for name in ("t.bad", "other"):  # a folded name gets its zeros under "other"
        labels = f'name="{name}",queue_name="q"'
        for counter in ("sent", "received", "started", "retried", "revoked", "rejected"):
            assert f"celery_task_{counter}_total{{{labels}}} 0.0" in text
        assert f"celery_task_runtime_seconds_count{{{labels}}} 0.0" in text
        assert f"celery_task_queue_wait_seconds_count{{{labels}}} 0.0" in text
    assert 'celery_task_succeeded_total{name="t.bad",queue_name="q"} 0.0' in text
    assert 'celery_task_failed_total{name="t.bad",queue_name="q"} 1.0' in text
    assert 'celery_task_failed_total{name="other",queue_name="q"} 0.0' in text
    # After a restart the loaded counters bring their zeros back.
    restarted = State(Config(label_grace=0), clock=clock)
    restarted.ledger.import_state(state.ledger.export_state())
    assert 'celery_task_succeeded_total{name="t.bad",queue_name="q"} 0.0' in scrape(restarted)
    # With --task-worker-label the zeros are per hostname too.
    by_host = State(Config(task_worker_label=True, label_grace=0), clock=clock)
    by_host.ledger.apply(TaskUpdate("a", FAILURE, "events", name="t.bad", queue="q", worker="w"))
    text = scrape(by_host)
    assert 'celery_task_succeeded_total{hostname="w",name="t.bad",queue_name="q"} 0.0' in text
    if shutil.which("promtool"):
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=text.encode(), capture_output=True
        )
        assert b"error" not in check.stderr.lower(), check.stderr.decode()


def test_attribution_metrics_are_rendered() -> None:
    clock = FakeClock()
    state = State(Config(), clock=clock)
    state.ledger.apply(TaskUpdate("a", SUCCESS, "pubsub"))
    assert "celery_exporter_label_pending_tasks 1.0" in scrape(state)
    clock.advance(state.config.label_grace)
    text = scrape(state)
    assert "celery_exporter_tasks_unattributed_total 1.0" in text
    assert "celery_exporter_label_pending_tasks 0.0" in text
    assert "celery_exporter_label_pending_overflow_total 0.0" in text
    assert 'celery_task_succeeded_total{name="unknown",queue_name="unknown"} 1.0' in text
