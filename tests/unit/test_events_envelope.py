"""The lean consumer's envelope decoding: same dicts as Celery's receiver, junk counted.

Messages are built as kombu's Redis transport publishes them (JSON envelope, base64 body);
Celery's own `EventReceiver.event_from_message` is the reference for what each event gets.
"""

from __future__ import annotations

import base64
import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.celery_io.event_envelope import EventDecoder


def envelope(
    body: Any,
    *,
    content_type: str = "application/json",
    encoding: str = "utf-8",
    body_encoding: str | None = "base64",
    headers: dict[str, Any] | None = None,
    raw: bytes | None = None,
) -> bytes:
    payload = raw if raw is not None else json.dumps(body).encode()
    props: dict[str, Any] = {
        "delivery_mode": 1,
        "delivery_info": {"exchange": "celeryev", "routing_key": "task.started"},
        "priority": 0,
        "delivery_tag": "t1",
    }
    if body_encoding is not None:
        props["body_encoding"] = body_encoding
    text = base64.b64encode(payload).decode() if body_encoding else payload.decode()
    return json.dumps(
        {
            "body": text,
            "content-encoding": encoding,
            "content-type": content_type,
            "headers": headers if headers is not None else {"hostname": "w@h"},
            "properties": props,
        }
    ).encode()


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "hostname": "w@h",
        "utcoffset": 0.0,
        "pid": 7,
        "clock": 5,
        "timestamp": 1_700_000_000.5,
        "type": kind,
        **fields,
    }


def decode(data: bytes, here: float = 0.0) -> tuple[list[dict[str, Any]], dict[str, int]]:
    decoder = EventDecoder(now=lambda: 42.0)
    out: list[dict[str, Any]] = []
    decoder.decode(data, here, out)
    return out, decoder.take_counts()


def test_single_event_and_task_multi() -> None:
    out, counts = decode(envelope(event("task-started", uuid="a")))
    assert counts == {}
    assert out == [{**event("task-started", uuid="a"), "local_received": 42.0, "clock": 5}]
    group = [event("task-started", uuid="a"), event("task-succeeded", uuid="a", runtime=0.5)]
    out, counts = decode(envelope(group))
    assert [e["type"] for e in out] == ["task-started", "task-succeeded"] and counts == {}
    out, _ = decode(envelope(event("task-started", uuid="a"), body_encoding=None))
    assert out and out[0]["uuid"] == "a"  # a body that is not base64-encoded is read as is


def test_same_dicts_as_celerys_receiver() -> None:
    """Clock, timestamp (utcoffset) and local_received as EventReceiver.event_from_message."""
    from celery import Celery
    from celery.events.receiver import EventReceiver

    app = Celery("ref", broker="memory://", set_as_current=False)
    receiver = EventReceiver(None, app=app)
    sent = [
        event("worker-heartbeat", processed=3, clock=9),
        event("task-sent", uuid="a", clock=2),
        event("task-received", uuid="a", utcoffset=-2.0),  # a host two hours east of UTC
        {k: v for k, v in event("task-started", uuid="a").items() if k != "clock"},
        event("task-succeeded", uuid="a", clock=3, utcoffset=5.5, runtime=1.0),
        {k: v for k, v in event("task-failed", uuid="b").items() if k != "utcoffset"},
    ]
    here = 1.0
    decoder = EventDecoder(now=lambda: 42.0)
    ours: list[dict[str, Any]] = []
    for e in sent:
        decoder.decode(envelope(e), here, ours)
    theirs = []
    for e in copy.deepcopy(sent):
        _, body = receiver.event_from_message(
            e, now=lambda: 42.0, adjust_timestamp=lambda ts, off: ts - (off - here) * 3600
        )
        theirs.append(body)
    assert ours == theirs
    assert decoder.clock == app.clock.value


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"content_type": "application/x-python-serialize"}, "pickle"),
        ({"content_type": "application/x-yaml"}, "not_json"),
        ({"content_type": "application/x-msgpack"}, "not_json"),
        ({"encoding": "latin-1"}, "not_json"),
        ({"headers": {"compression": "application/x-gzip"}}, "not_json"),
        ({"body_encoding": "rot13"}, "not_json"),
    ],
)
def test_other_content_is_skipped_never_decoded(
    kwargs: dict[str, Any], why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("pickle must never be decoded")

    monkeypatch.setattr(pickle, "loads", refuse)
    raw = pickle.dumps(event("task-started", uuid="a"))
    out, counts = decode(envelope(None, raw=raw, **kwargs))
    assert out == [] and counts == {f"skipped:{why}": 1}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"text"',
        json.dumps({"content-type": "application/json"}).encode(),  # no body
        json.dumps(
            {
                "content-type": "application/json",
                "body": "@@@",
                "properties": {"body_encoding": "base64"},
            }
        ).encode(),
        envelope(None, raw=b"{broken"),
        envelope(None, raw="é".encode("latin-1")),
        envelope(None, raw=b"12"),  # a body that is no event
        envelope([event("task-started"), "junk", {"no": "type"}]),
    ],
)
def test_unparsable_is_counted(data: bytes) -> None:
    out, counts = decode(data)
    assert counts.get("parse_errors", 0) >= 1
    assert all(e["type"] == "task-started" for e in out)


def test_bad_field_types_do_not_raise() -> None:
    out, counts = decode(envelope(event("task-started", clock="x", utcoffset="y")))
    assert counts == {} and out[0]["clock"] == "x" and out[0]["timestamp"] == 1_700_000_000.5


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    decode(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "clock", "utcoffset", "timestamp", "uuid", "hostname"]),
        json_values,
    )
    | json_values,
    st.sampled_from(["application/json", "application/x-python-serialize", None]),
)
def test_any_json_body_never_raises(body: Any, content_type: str | None) -> None:
    data = envelope(body, content_type=content_type or "")
    out, counts = decode(data)
    for e in out:
        assert isinstance(e, dict) and isinstance(e["type"], str) and "local_received" in e
    assert len(out) + sum(counts.values()) >= 1 or body == []


class _Buffered:
    """A subscribed connection with `n` messages already waiting, then silence."""

    def __init__(self, n: int, stop: Any) -> None:
        self.waiting = n
        self.stop = stop
        self.message = [b"pmessage", b"*", b"/0.celeryev/task.started", envelope(event("x"))]

    def can_read(self, timeout: float = 0) -> bool:
        if not self.waiting and timeout:
            self.stop.set()  # drained: end the test's consume loop
        return self.waiting > 0

    def read_response(self, push_request: bool = False) -> list[bytes]:
        self.waiting -= 1
        return self.message


def test_lingers_once_per_wake_up_but_not_while_behind() -> None:
    """After a wake-up the consumer waits `linger` so one read serves many messages, but a
    full batch means more is waiting: it reads on at once, or a fast stream would outgrow
    Redis's pub/sub output buffer for us."""
    import threading

    from exporter import pubsub_batch
    from exporter.celery_io.redis_events import RedisEventSettings, RedisEventStream

    sleeps: list[float] = []
    batches: list[int] = []
    stream = RedisEventStream(
        RedisEventSettings(pattern="/0.celeryev/*"),
        lambda events, counts: batches.append(len(events)),
        lambda up, error: None,
        utcoffset=lambda: 0.0,
    )
    # Not a patch of time.sleep: other tests' threads still running would add to `sleeps`.
    stream.sleep = sleeps.append
    stop = threading.Event()
    stream._consume(_Buffered(2 * pubsub_batch.MAX_BATCH + 10, stop), stop)
    assert batches == [pubsub_batch.MAX_BATCH, pubsub_batch.MAX_BATCH, 10]
    assert sleeps == [pubsub_batch.LINGER]
