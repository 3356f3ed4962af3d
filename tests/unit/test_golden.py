"""Golden /metrics per scenario: the metric contract. `make goldens` rewrites them.

Each scenario drives the real poller and collectors from plain data on a fake clock, so the
output is byte-for-byte stable; `promtool check metrics` lints every golden file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest

from exporter.apicounters import ApiCounters
from exporter.clock import FakeClock
from exporter.collectors import build_registry
from exporter.config import Config
from exporter.poller import Poller
from exporter.state import SourceStatistics, State
from exporter.taskdata import TaskUpdate
from tests.support.beat import beat_scenario
from tests.support.cluster import FakeReader
from tests.support.compat_scenario import compat_busy, compat_idle, compat_prefix_static

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
COMPAT_LINT = re.compile(
    r"\w+_active_(consumer|worker|process)_count non-histogram and non-summary metrics "
    r'should not have "_count" suffix'
)


def render(state: State) -> str:
    text = generate_latest(build_registry(state)).decode()
    # The Python version differs between machines; everything else is deterministic.
    return re.sub(r'python="[^"]*"', 'python="X"', text)


def idle(clock: FakeClock) -> State:
    state = State(Config(queues=("celery",)), clock)
    Poller(state, FakeReader()).poll()
    return state


def busy(clock: FakeClock, **options: Any) -> State:
    state = State(Config(queues=("reports",), **options), clock)
    reader = FakeReader()
    now = clock.time()
    reader.add_worker(
        "alpha@node1",
        queues=("celery", "mail"),
        active=[
            {"id": "a1", "name": "app.send_mail", "time_start": now - 5,
             "delivery_info": {"routing_key": "mail"}},
            {"id": "a2", "name": "app.render", "time_start": now - 1200,
             "delivery_info": {"routing_key": "celery"}},
        ],
        reserved=3, scheduled=1, processed={"app.send_mail": 120, "app.render": 7},
    )  # fmt: skip
    reader.add_worker("beta@node2", queues=("celery",), reserved=1, processed={"app.render": 40})
    reader.add_worker("gamma@node3", queues=("bulk", "priority"), concurrency=8)
    reader.set_queue("celery", 4210, heads=("h1", "h2"))
    reader.set_queue("mail", 3, heads=("m1",))
    reader.set_queue("bulk", 0)
    reader.set_queue("priority", 12, heads=("p1",))
    reader.unacked = 6
    state.ledger.apply(TaskUpdate("h1", "SENT", "events", timestamp=now - 720))
    poller = Poller(state, reader)
    poller.poll()
    clock.advance(15)
    poller.poll()
    return state


def broker_down(clock: FakeClock) -> State:
    state = State(Config(), clock)
    reader = FakeReader()
    reader.add_worker("alpha@node1")
    reader.set_queue("celery", 9)
    poller = Poller(state, reader)
    poller.poll()
    reader.down = True
    for _ in range(3):
        clock.advance(10)
        poller.poll()
    return state


def task_sources(clock: FakeClock, **options: Any) -> State:
    """Busy cluster plus every task source reporting, and a ledger with each outcome."""
    state = busy(clock, **options)
    now = clock.time()
    updates = [
        TaskUpdate("t1", "SENT", "events", timestamp=now - 30, name="app.render", queue="celery"),
        TaskUpdate("t1", "STARTED", "events", timestamp=now - 20, worker="alpha@node1"),
        TaskUpdate("t1", "SUCCESS", "pubsub", timestamp=now - 18, runtime=2.0),
        TaskUpdate("t2", "STARTED", "events", timestamp=now - 9, name="app.send_mail",
                   queue="mail"),
        TaskUpdate("t2", "FAILURE", "events", timestamp=now - 8, runtime=1.0,
                   exception_type="ConnectionError", exception_message="reset"),
        TaskUpdate("t3", "RETRY", "pubsub", timestamp=now - 5, name="app.send_mail", queue="mail",
                   retries=1),
        TaskUpdate("t4", "REVOKED", "reconcile", timestamp=now - 4, name="app.render",
                   queue="celery"),
        TaskUpdate("t5", "RECEIVED", "events", timestamp=now - 3, name="app.render",
                   queue="celery", worker="beta@node2"),
        TaskUpdate("t6", "REJECTED", "events", timestamp=now - 2, name="app.send_mail",
                   queue="mail", worker="alpha@node1"),
    ]  # fmt: skip
    for update in updates:
        state.ledger.apply(update)
    ev_stats = SourceStatistics(events={"task-succeeded": 4, "worker-heartbeat": 9},
                                parse_errors=0, task_events_enabled=True)  # fmt: skip
    state.update_source("events", up=True, last_message_at=now - 1, stats=ev_stats)
    state.update_source("pubsub", up=True, last_message_at=now - 2, messages_total=2,
                        stats=SourceStatistics(skipped={"pickle": 1}, parse_errors=1))  # fmt: skip
    api = state.attached(ApiCounters)
    api.request("/api/sitrep", 200)
    api.action("retry", "ok")
    state.update_source("reconcile", up=True, last_message_at=now - 60, messages_total=5,
                        stats=SourceStatistics(runs=1, last_duration_seconds=0.25,
                                               keys_scanned=5))  # fmt: skip
    return state


def prefix_static(clock: FakeClock) -> State:
    """celery-exporter's --metric-prefix and --static-label (twice), with --task-worker-label
    and both generic-hostname switches, over the task_sources cluster."""
    return task_sources(clock, metric_prefix="myapp_",
                        static_labels={"cluster": "eu1", "shard": "01"}, task_worker_label=True,
                        generic_hostname_task_sent_metric=True,
                        generic_hostname_worker_task_metric=True)  # fmt: skip


SCENARIOS: dict[str, Callable[[FakeClock], State]] = {
    "beat": beat_scenario,
    "task_sources": task_sources,
    "idle": idle,
    "busy": busy,
    "broker_down": broker_down,
    # Not beside the others: the README's metric table lists the default names only.
    "options/prefix_static": prefix_static,
    # --compat danihodovic: celery-exporter's families (apart: the README's table is ours).
    "compat/idle": compat_idle,
    "compat/busy": compat_busy,
    "compat/prefix_static": compat_prefix_static,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_metrics(name: str) -> None:
    text = render(SCENARIOS[name](FakeClock()))
    path = GOLDEN / f"{name}.prom"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path.name} missing: run `make goldens`"
    assert text == path.read_text(), f"/metrics changed for {name}: run `make goldens` if meant"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_passes_promtool(name: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: `make deps` installs Debian's prometheus package")
    path = GOLDEN / f"{name}.prom"
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=path.read_bytes(), capture_output=True, timeout=60
    )
    out = proc.stdout.decode() + proc.stderr.decode()
    if name.startswith("compat/"):
        # celery-exporter's own names, kept for its dashboards: promtool's only complaint.
        out = "\n".join(line for line in out.splitlines() if not COMPAT_LINT.fullmatch(line))
        assert out.strip() == "", out
        return
    assert proc.returncode == 0, out
    assert proc.stdout.decode().strip() == "", proc.stdout.decode()
