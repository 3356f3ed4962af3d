"""The poller on plain data and a fake clock: workers, queues, ages, outages."""

from __future__ import annotations

import logging

import pytest

from exporter.clock import FakeClock
from exporter.config import Config
from exporter.poller import Poller
from exporter.state import State
from exporter.taskdata import TaskUpdate
from tests.support.cluster import FakeReader


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **cfg: object) -> tuple[State, FakeReader, Poller]:
    state = State(Config(**cfg), clock)  # type: ignore[arg-type]
    reader = FakeReader()
    return state, reader, Poller(state, reader)


def test_no_answer_is_none_not_zero(clock: FakeClock) -> None:
    _state, reader, poller = make(clock)
    reader.add_worker("w1@h", reserved=2)
    reader.replies["scheduled"] = {}  # nobody answered scheduled
    snap = poller.poll()
    w = snap.workers["w1@h"]
    assert w.reserved == 2 and w.active == 0
    assert w.scheduled is None
    assert snap.health.inspect_timeouts_total == {"scheduled": 1}


def test_worker_times_out_then_its_series_are_purged(clock: FakeClock) -> None:
    _state, reader, poller = make(clock, worker_timeout=30.0, purge_offline_worker_metrics=120.0)
    reader.add_worker("w1@h", queues=("default",))
    assert poller.poll().workers["w1@h"].up
    reader.remove_worker("w1@h")
    clock.advance(10)
    w = poller.poll().workers["w1@h"]
    assert w.up and w.active is None  # silent, but within the timeout
    assert w.queues == ("default",)
    clock.advance(25)
    assert not poller.poll().workers["w1@h"].up
    clock.advance(100)
    snap = poller.poll()
    assert "w1@h" not in snap.workers
    # The queue it consumed is still reported, so a workers-per-queue alert can fire.
    assert "default" in snap.queues


def test_heartbeats_keep_a_busy_worker_up(clock: FakeClock) -> None:
    state, reader, poller = make(clock, worker_timeout=30.0)
    reader.add_worker("w1@h")
    poller.poll()
    reader.remove_worker("w1@h")  # a busy solo worker cannot answer inspect
    clock.advance(60)
    state.saw_worker("w1@h", clock.time() - 2)
    assert poller.poll().workers["w1@h"].up


def test_queues_include_configured_and_consumed(clock: FakeClock) -> None:
    _state, reader, poller = make(clock, queues=("reports",))
    reader.add_worker("w1@h", queues=("celery", "mail"))
    reader.set_queue("mail", 7, heads=("t1",))
    snap = poller.poll()
    assert sorted(snap.queues) == ["celery", "mail", "reports"]
    assert snap.queues["mail"].length == 7
    assert snap.queues["reports"].length == 0


def test_oldest_age_first_seen_is_a_lower_bound(clock: FakeClock) -> None:
    _state, reader, poller = make(clock)
    reader.add_worker("w1@h", queues=("q",))
    reader.set_queue("q", 3, heads=("a",))
    assert poller.poll().queues["q"].oldest_age == 0.0
    clock.advance(42)
    q = poller.poll().queues["q"]
    assert q.oldest_age == 42.0 and q.oldest_age_source == "first_seen"
    reader.set_queue("q", 2, heads=("b",))  # "a" was taken: the clock restarts for "b"
    clock.advance(5)
    assert poller.poll().queues["q"].oldest_age == 0.0


def test_oldest_age_from_sent_event(clock: FakeClock) -> None:
    state, reader, poller = make(clock)
    reader.add_worker("w1@h", queues=("q",))
    state.ledger.apply(TaskUpdate("a", "SENT", "events", timestamp=clock.time() - 300))
    reader.set_queue("q", 1, heads=("a",))
    q = poller.poll().queues["q"]
    assert q.oldest_age == 300.0 and q.oldest_age_source == "sent_event"


def test_oldest_age_is_the_max_over_priority_heads(clock: FakeClock) -> None:
    state, reader, poller = make(clock)
    reader.add_worker("w1@h", queues=("q",))
    state.ledger.apply(TaskUpdate("old", "SENT", "events", timestamp=clock.time() - 900))
    state.ledger.apply(TaskUpdate("new", "SENT", "events", timestamp=clock.time() - 10))
    reader.set_queue("q", 2, heads=("new", "old"))
    assert poller.poll().queues["q"].oldest_age == 900.0


def test_broker_outage_keeps_values_logs_once_and_recovers(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    _state, reader, poller = make(clock)
    reader.add_worker("w1@h")
    reader.set_queue("celery", 5)
    poller.poll()
    reader.down = True
    with caplog.at_level(logging.WARNING, logger="exporter.poller"):
        for _ in range(5):
            clock.advance(10)
            snap = poller.poll()
    assert not snap.health.broker_up
    assert snap.health.errors_total == 5 and snap.health.polls_total == 6
    assert snap.queues["celery"].length == 5  # last good value, with its age visible
    assert snap.health.last_success == clock.time() - 50
    assert reader.closed == 5
    errors = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(errors) == 1
    reader.down = False
    clock.advance(10)
    with caplog.at_level(logging.WARNING, logger="exporter.poller"):
        snap = poller.poll()
    assert snap.health.broker_up and snap.health.last_error is None
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_running_tasks_are_in_the_snapshot(clock: FakeClock) -> None:
    _state, reader, poller = make(clock)
    active = [
        {"id": "t1", "name": "app.slow", "time_start": clock.time() - 700.0,
         "delivery_info": {"routing_key": "celery"}},
    ]  # fmt: skip
    reader.add_worker("w1@h", active=active)
    running = poller.poll().workers["w1@h"].running
    assert running[0].task_id == "t1" and running[0].started_at == clock.time() - 700.0
    assert running[0].queue == "celery"


def test_known_workers_bound_the_wait_and_discovery_runs_periodically(clock: FakeClock) -> None:
    state, reader, poller = make(clock)
    reader.add_worker("w1@h")
    reader.add_worker("w2@h")
    poller.poll()
    clock.advance(10)
    poller.poll()
    assert reader.expected == [None, 2]  # first poll discovers, the next waits for 2 only
    clock.advance(60)
    poller.poll()
    assert reader.expected[-1] is None  # periodic rediscovery
    clock.advance(10)
    state.saw_worker("new@h", clock.time())
    poller.poll()
    assert reader.expected[-1] is None  # an unknown worker's heartbeat forces discovery


def test_the_poll_job_feeds_the_polled_tasks_to_the_ledger_at_once() -> None:
    """No job of its own (a scheduler wake-up every half poll): the daemon's poll job feeds
    the new snapshot's reserved tasks to the ledger right after the poll."""
    from exporter.daemon import Daemon
    from exporter.taskdata import RECEIVED

    daemon = Daemon(Config(result_backend=None))
    reader = FakeReader()
    daemon.poller = Poller(daemon.state, reader)
    ledger = daemon.state.ledger
    ledger.apply(TaskUpdate("a", RECEIVED, "events", name="t.add"))  # task-received: no queue
    reader.add_worker("w@h", queues=("bulk",))
    reader.replies["reserved"]["w@h"] = [
        {"id": "a", "name": "t.add", "delivery_info": {"routing_key": "bulk"}}
    ]
    daemon._poll()
    assert ledger.counts().tasks == {("t.add", "bulk", "received"): 1}
    reader.replies["reserved"]["w@h"] = []
    changes = ledger.changes
    daemon._poll()  # nothing running or waiting: no ledger write (the keeper would save)
    assert ledger.changes == changes
    assert all(job_id != "inspected-tasks" for s in daemon.sources for *_f, job_id in s.jobs())
    daemon.io.close()
