"""Golden scenarios of `--compat danihodovic`: a cluster from plain data (FakeReader) and task
events fed through the real events source (`EventsSource.handle_many`), as the lean consumer
hands them over, on a fake clock."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from exporter.clock import FakeClock
from exporter.config import Config
from exporter.keeper.gate import StartGate
from exporter.poller import Poller
from exporter.sources.events import EventsSource
from exporter.state import State
from tests.support.cluster import FakeReader


class NoStream:
    """The events source's stream, never run: the scenario hands batches over itself."""

    def __init__(self, *_handlers: Any) -> None:
        pass

    def stop(self) -> None:
        pass


def compat_idle(clock: FakeClock) -> State:
    state = State(Config(queues=("celery",), compat="danihodovic"), clock)
    Poller(state, FakeReader()).poll()
    return state


def _cluster(clock: FakeClock, **options: Any) -> State:
    state = State(Config(queues=("reports",), compat="danihodovic", **options), clock)
    reader = FakeReader()
    now = clock.time()
    reader.add_worker("alpha@node1", queues=("celery", "mail"),
                      active=[{"id": "a1", "name": "app.send_mail", "time_start": now - 5,
                               "delivery_info": {"routing_key": "mail"}}],
                      processed={"app.send_mail": 12})  # fmt: skip
    # A second worker on the same host: celery-exporter's hostname is the host part only.
    reader.add_worker("omega@node1", queues=("celery",), concurrency=2, active=[
        {"id": "a2", "name": "app.render", "time_start": now - 2}])  # fmt: skip
    reader.add_worker("beta@node2", queues=("mail",))
    reader.set_queue("celery", 42, heads=("h1",))
    reader.set_queue("mail", 3, heads=("m1",))
    Poller(state, reader).poll()
    return state


def _ev(kind: str, uuid: str, at: float, host: str = "alpha@node1", **kw: Any) -> dict[str, Any]:
    return {"type": kind, "uuid": uuid, "hostname": host, "timestamp": at,
            "local_received": at + 0.01, **kw}  # fmt: skip


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat()


def task_events(now: float) -> list[dict[str, Any]]:
    """One task per story: a success, a retry then success (each delivery counts), failures
    (a named and a dotted exception class), events of a task never seen before (no name),
    a revoke and a reject."""
    web = "web-7f9c@frontend"
    # fmt: off
    return [
        _ev("task-sent", "c1", now - 30, web, name="app.render", queue="celery"),
        _ev("task-received", "c1", now - 29.5, name="app.render"),
        _ev("task-started", "c1", now - 29, "omega@node1"),
        _ev("task-succeeded", "c1", now - 28.7, "omega@node1", runtime=0.3),
        _ev("task-sent", "c2", now - 20, web, name="app.send_mail", queue="mail"),
        _ev("task-received", "c2", now - 19.9, "beta@node2", name="app.send_mail"),
        _ev("task-started", "c2", now - 19.8, "beta@node2"),
        _ev("task-retried", "c2", now - 19, "beta@node2", exception="ConnectionError('reset')"),
        # The retry is published again from the worker's pool process (its task-sent names
        # that process, gen<pid>@<host>), with a 5 s countdown as its ETA.
        _ev("task-sent", "c2", now - 19, "gen4242@node2", name="app.send_mail", queue="mail",
            eta=_iso(now - 14), retries=1),
        _ev("task-received", "c2", now - 18.9, name="app.send_mail", retries=1),
        _ev("task-started", "c2", now - 12, host="alpha@node1"),
        _ev("task-succeeded", "c2", now - 10.8, runtime=1.2),
        _ev("task-received", "c3", now - 9, name="app.fail"),
        _ev("task-started", "c3", now - 8.9),
        _ev("task-failed", "c3", now - 8.8, exception="ValueError('bad input')"),
        _ev("task-received", "c4", now - 8, "beta@node2", name="app.fail"),
        _ev("task-failed", "c4", now - 7.9, "beta@node2",
            exception="billing.errors.CardDeclined('x')"),
        _ev("task-failed", "c5", now - 7, exception="KeyError('k')"),
        _ev("task-received", "c6", now - 6, name="app.render"),
        _ev("task-revoked", "c6", now - 5, terminated=True),
        _ev("task-received", "c7", now - 4, "beta@node2", name="app.send_mail"),
        _ev("task-rejected", "c7", now - 3.9, "beta@node2", requeue=False),
        {"type": "task-succeeded", "hostname": "alpha@node1"},  # no uuid: not a task event
    ]
    # fmt: on


def compat_busy(clock: FakeClock, **options: Any) -> State:
    state = _cluster(clock, **options)
    source = EventsSource(state, NoStream, StartGate())
    source.handle_many(task_events(clock.time()))
    source.flush()
    # Outcomes are the ledger's: a task whose queue no source named waits out its grace.
    clock.advance(state.config.label_grace)
    return state


def compat_prefix_static(clock: FakeClock) -> State:
    """--metric-prefix, --static-label and both generic-hostname switches, in compat mode."""
    return compat_busy(clock, metric_prefix="myapp_", static_labels={"cluster": "eu1"},
                       generic_hostname_task_sent_metric=True,
                       generic_hostname_worker_task_metric=True)  # fmt: skip
