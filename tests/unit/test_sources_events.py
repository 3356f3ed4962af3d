"""Event parsing guards, the "-E is off" check, and the events source's counters."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.clock import FakeClock
from exporter.config import Config
from exporter.decode.events import exception_type, parse_event
from exporter.keeper.gate import StartGate
from exporter.sources.events import EventsSource
from exporter.sources.events_check import EventsEnabledCheck
from exporter.state import State
from exporter.taskdata import FAILURE, RETRY, SENT, SUCCESS, TaskUpdate


def ev(kind: str, **kw: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "uuid": "id1",
        "hostname": "w1@h",
        "timestamp": 1000.0,
        "local_received": 1000.1,
        **kw,
    }


def test_success_without_runtime_and_with_bad_runtime() -> None:
    u = parse_event(ev("task-succeeded"))
    assert u is not None and u.state == SUCCESS and u.runtime is None
    for bad in ("1.5", -3, float("nan"), True, None, [1]):
        u = parse_event(ev("task-succeeded", runtime=bad))
        assert u is not None and u.runtime is None
    u = parse_event(ev("task-succeeded", runtime=2))
    assert u is not None and u.runtime == 2.0


def test_fields_guarded() -> None:
    assert parse_event(ev("task-started", uuid=None)) is None
    assert parse_event(ev("task-started", uuid=5)) is None
    assert parse_event(ev("worker-heartbeat")) is None
    u = parse_event(ev("task-received", name=["x"], retries="1", eta="2026-01-01T00:00:00"))
    assert u is not None and u.name is None and u.retries is None and u.eta is not None
    u = parse_event(ev("task-sent", name="t", queue="q1", retries=0))
    assert u is not None and u.state == SENT and u.worker is None and u.queue == "q1"


OPTIONAL = ("name", "queue", "routing_key", "eta", "parent_id", "root_id", "retries", "runtime")


def test_absent_or_bad_fields_keep_their_defaults() -> None:
    """Absent (no cleaner called) and present but unusable (cleaned to None) read alike."""
    fields = ("name", "queue", "eta", "parent_id", "root_id", "retries", "runtime")
    for bad in (None, {}, 5, "", [1], True, -1.0):
        u = parse_event(ev("task-received", **dict.fromkeys(OPTIONAL, bad)))
        assert u is not None
        got = {f: getattr(u, f) for f in fields}
        if bad == 5:  # an int is a retry count, and a runtime on a received event
            assert got == {**dict.fromkeys(fields), "retries": 5, "runtime": 5.0}
        else:
            assert got == dict.fromkeys(fields), bad
    for kind in ("task-started", "task-succeeded", "task-failed"):
        u = parse_event(ev(kind))
        assert u is not None and u.worker == "w1@h" and u.name is None and u.queue is None
        assert u.exception_type is u.exception_message is u.traceback is None
    u = parse_event(ev("task-received", queue=7, routing_key="rk"))
    assert u is not None and u.queue == "rk"  # (an unusable queue falls back to the key)
    u = parse_event(ev("task-received", routing_key="rk"))
    assert u is not None and u.queue == "rk"
    u = parse_event(ev("task-started", retries=3))
    assert u is not None and u.retries is None  # (only sent and received number attempts)
    u = parse_event(ev("task-received", retries=1_000_000, parent_id="p", root_id="r" * 300))
    assert u is not None and u.retries is None and u.parent_id == "p"
    assert u.root_id == "r" * 255


def test_clock_skew_far_off_uses_receive_time() -> None:
    u = parse_event(ev("task-started", timestamp=1000.0 + 10 * 86_400))
    assert u is not None and u.timestamp == 1000.1
    u = parse_event(ev("task-started", timestamp="soon"))
    assert u is not None and u.timestamp == 1000.1


def test_exception_type_from_repr() -> None:
    assert exception_type("ValueError('bad input')") == "ValueError"
    assert exception_type("tests.app.tasks.TransientError('x')") == "TransientError"
    assert exception_type("<weird repr>") is None
    # Celery's Reject repr names no class; its result's exc_type is "Reject"
    assert exception_type("reject requeue=False: refused") == "Reject"
    assert exception_type(None) is None
    u = parse_event(ev("task-failed", exception="KeyError('k')", traceback="..."))
    assert u is not None and u.state == FAILURE and u.exception_type == "KeyError"
    u = parse_event(ev("task-retried", exception="Retry('x')"))
    assert u is not None and u.state == RETRY


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "uuid",
                "hostname",
                "timestamp",
                "local_received",
                "name",
                "runtime",
                "retries",
                "eta",
                "exception",
                "queue",
                "parent_id",
                "processed",
            ]
        ),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=30)
        | st.lists(st.integers(), max_size=3),
    )
)
def test_any_event_parses_or_is_ignored(event: dict[str, Any]) -> None:
    out = parse_event(event)
    assert out is None or isinstance(out, TaskUpdate)


def test_events_enabled_check() -> None:
    check = EventsEnabledCheck()
    check.worker_event("worker-heartbeat", "a@h", 0, 100.0)
    check.worker_event("worker-heartbeat", "a@h", 0, 102.0)  # idle: nothing to say
    assert check.enabled()
    check.worker_event("worker-heartbeat", "a@h", 5, 104.0)  # processed 5, no task event
    assert not check.enabled() and check.hosts_off() == ["a@h"]
    check.task_event("a@h", 105.0)
    check.worker_event("worker-heartbeat", "a@h", 9, 106.0)
    assert check.enabled()
    check.worker_event("worker-heartbeat", "b@h", 1, 106.0)
    check.worker_event("worker-heartbeat", "b@h", 3, 108.0)
    assert not check.enabled()
    check.worker_event("worker-offline", "b@h", None, 109.0)
    assert check.enabled()


class FakeStream:
    def __init__(self, handler: Any, on_state: Any, batch_handler: Any) -> None:
        self.handler, self.on_state, self.batch_handler = handler, on_state, batch_handler

    def run(self, stop: threading.Event) -> None:
        self.on_state(True, None)
        stop.wait()

    def stop(self) -> None:
        pass

    def enable_events(self) -> None:
        raise ConnectionError("broker down")


def test_events_source_counts_types_and_survives_junk() -> None:
    clock = FakeClock()
    state = State(Config(), clock=clock)
    src = EventsSource(state, FakeStream, StartGate())
    src.handle(ev("task-received", name="t"))
    src.handle(ev("task-succeeded", runtime=0.1))
    src.handle(ev("task-succeeded", runtime=0.1))
    src.handle(ev("worker-heartbeat", processed=1))
    src.handle({"type": object()})
    src.handle("not a dict")  # type: ignore[arg-type]
    src.enable_events()  # broker down: counted, not raised
    src.flush()
    detail = state.source_health()["events"].stats
    assert detail.events["task-succeeded"] == 2 and detail.events["other"] == 1
    assert detail.parse_errors == 1 and detail.enable_events_errors == 1
    assert detail.task_events_enabled is True
    clock.advance(state.config.label_grace)  # task-received names no queue
    counts = state.ledger.counts().tasks
    assert counts[("t", "unknown", "succeeded")] == 1


def test_batches_count_like_single_events_and_carry_the_consumers_counts() -> None:
    """The lean consumer's batches: one ledger apply per batch, same counts as one by one."""
    one, many = (State(Config(), clock=FakeClock()) for _ in range(2))
    events = [ev("task-received", uuid=f"t{i}", name="t") for i in range(5)] + [
        ev("task-succeeded", uuid=f"t{i}", runtime=0.1) for i in range(5)
    ]
    events += [ev("worker-heartbeat", processed=5), {"type": 3}, "junk"]  # type: ignore[list-item]
    single = EventsSource(one, FakeStream, StartGate())
    for e in events:
        single.handle(dict(e) if isinstance(e, dict) else e)
    batched = EventsSource(many, FakeStream, StartGate())
    batched.stream.batch_handler(
        [dict(e) if isinstance(e, dict) else e for e in events],
        {"skipped:pickle": 2, "parse_errors": 1},
    )
    single.flush()
    batched.flush()
    assert one.ledger.counts().tasks == many.ledger.counts().tasks
    d1, d2 = one.source_health()["events"].stats, many.source_health()["events"].stats
    assert d2.skipped["pickle"] == 2 and d2.parse_errors == d1.parse_errors + 1
    assert d1.events == d2.events


def test_batch_task_events_count_before_a_later_heartbeat() -> None:
    """Within one batch, a worker's task events precede its heartbeat: not reported "-E off"."""
    state = State(Config(), clock=FakeClock())
    src = EventsSource(state, FakeStream, StartGate())
    src.handle_many([ev("worker-heartbeat", processed=0)])
    state.clock.advance(10)  # type: ignore[attr-defined]
    src.handle_many([ev("task-succeeded", uuid="x"), ev("worker-heartbeat", processed=1)])
    assert src.check.enabled()
    for processed in (2, 3):  # processed more, no task event since
        state.clock.advance(10)  # type: ignore[attr-defined]
        src.handle_many([ev("worker-heartbeat", processed=processed)])
    assert not src.check.enabled()


def test_counters_are_published_from_the_receiver_thread_once_a_second() -> None:
    """No scheduler wake-up per second: a batch publishes the counters when a second has
    passed since the last publish; the job only catches a batch followed by silence."""
    clock = FakeClock()
    state = State(Config(), clock=clock)
    src = EventsSource(state, FakeStream, StartGate())
    assert [interval for _f, interval, name in src.jobs() if name == "events-flush"] == [10.0]

    def published() -> float:
        return state.source_health()["events"].stats.events.get("task-received", 0)

    src.handle(ev("task-received", uuid="a", name="t"))
    assert published() == 1  # the first batch publishes at once
    clock.advance(0.5)
    src.handle(ev("task-received", uuid="b", name="t"))
    assert published() == 1  # within the second: held back
    clock.advance(0.6)
    src.handle(ev("task-received", uuid="c", name="t"))
    assert published() == 3

    # Heartbeats alone (an idle worker, every 2 s) wait for the job, but for the first one:
    # its series appears at once.
    def beats() -> float:
        return state.source_health()["events"].stats.events.get("worker-heartbeat", 0)

    clock.advance(5)
    src.handle(ev("worker-heartbeat"))
    assert beats() == 1
    clock.advance(5)
    src.handle(ev("worker-heartbeat"))
    assert beats() == 1
    src.flush()
    assert beats() == 2


def test_parsed_update_equals_one_built_field_by_field() -> None:
    """parse_event builds its TaskUpdate from a field dict (taskdata.update_from): the object
    must be equal to, and hash like, one made by the dataclass's own __init__."""
    event = ev(
        "task-failed",
        exception="ValueError('boom')",
        hostname="w1@h",
        queue="q1",
        retries=2,
        parent_id="p",
        root_id="r",
    )
    u = parse_event(event)
    assert u is not None
    built = TaskUpdate(
        task_id=u.task_id,
        state=u.state,
        source=u.source,
        timestamp=u.timestamp,
        name=u.name,
        queue="q1",
        worker="w1@h",
        exception_type="ValueError",
        exception_message="ValueError('boom')",
        parent_id="p",
        root_id="r",
    )
    assert u == built and hash(u) == hash(built)
    assert vars(u).keys() == vars(built).keys()
