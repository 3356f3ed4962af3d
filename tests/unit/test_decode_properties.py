"""Every decoder is total over hostile input, and what it lets through renders.

For each input kind (stored/published results, event messages and bodies, saved ledger
state) hypothesis feeds arbitrary JSON and bytes: lone surrogates, nesting up to and past
orjson's limit, huge and non-finite numbers, dates outside what datetime holds, wrong types.
The decoder must never raise; what it returns goes into a real Ledger, and the whole
registry is rendered and checked with `promtool check metrics` (once per test: promtool is
a process start), and the API read path serializes it. Nothing may reach the safety net of
the collectors (celery_exporter_render_dropped_total stays 0): the decoders clean it first.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import fakeredis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest

from exporter.api.views import task_from_backend, task_from_record
from exporter.celery_io import CeleryIO
from exporter.celery_io.event_envelope import EventDecoder
from exporter.clock import FakeClock
from exporter.collectors import build_registry
from exporter.decode.clean import MAX_EPOCH, MIN_EPOCH
from exporter.decode.records import parse_result, read_record
from exporter.keeper.gate import StartGate
from exporter.sources.events import EventsSource
from exporter.state import State
from exporter.taskdata import TaskUpdate
from tests.support.api import HEAD_V, make_app, make_config
from tests.support.hostile import check_exposition, dumps, raw_inputs, texts, values

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EVENT_TYPES = ("task-succeeded", "task-failed", "task-retried", "task-received", "task-sent")
EVENT_TYPES += ("task-started", "worker-heartbeat", "worker-online", "worker-offline")
LABEL_FIELDS = ("name", "queue", "worker", "exception_type", "parent_id", "root_id")


def new_state(**cfg: Any) -> State:
    return State(make_config(**cfg), clock=FakeClock(1_700_000_000.0))


def assert_clean(update: TaskUpdate) -> None:
    for field in (*LABEL_FIELDS, "exception_message", "task_id", "state"):
        value = getattr(update, field)
        if value is None:
            continue
        assert isinstance(value, str) and value, (field, value)
        value.encode("utf-8")  # no lone surrogate
        if field in LABEL_FIELDS:
            assert value.isprintable() or not any(c < " " or c == "\x7f" for c in value)
            assert len(value) <= 500
    for field in ("timestamp", "eta"):
        when = getattr(update, field)
        assert when is None or MIN_EPOCH <= when <= MAX_EPOCH, (field, when)
    assert update.exception_message is None or len(update.exception_message) <= 2000


def render_and_check(state: State) -> None:
    registry = build_registry(state)
    text = generate_latest(registry)
    assert b"celery_exporter_render_dropped_total" in text
    for line in text.decode().splitlines():
        if line.startswith("celery_exporter_render_dropped_total{"):
            assert line.endswith(" 0.0"), line  # the decoders cleaned everything
    check_exposition(text)
    # The API's read path answers over the same ledger.
    client = TestClient(make_app(state, CeleryIO(state.config), fakeredis.FakeRedis()))
    for path in ("/api/sitrep", "/api/tasks/recent?limit=500", "/api/tasks/recent?status=FAILURE"):
        resp = client.get(path, headers=HEAD_V)
        assert resp.status_code == 200, (path, resp.text[:500])


def test_result_decoder_is_total_and_what_it_counts_renders() -> None:
    state = new_state(show_task_args=True)
    config = state.config
    ids = itertools.count()

    @SETTINGS
    @given(raw_inputs(), st.booleans())
    def one(raw: bytes, as_text: bool) -> None:
        task_id = f"t{next(ids)}"
        data: bytes | str = raw.decode("utf-8", "surrogateescape") if as_text else raw
        counted = parse_result(data, task_id, "pubsub")
        shown = read_record(data, task_id)
        assert isinstance(counted, str | TaskUpdate) and isinstance(shown, str | TaskUpdate)
        if isinstance(shown, TaskUpdate):
            assert_clean(shown)
            out = task_from_backend(task_id, shown, config)
            json.dumps(json.loads(out.model_dump_json()), allow_nan=False).encode("utf-8")
        if isinstance(counted, TaskUpdate):
            assert_clean(counted)
            state.ledger.apply(counted)
            record = state.ledger.get(task_id)
            assert record is not None
            task_from_record(record, config).model_dump_json().encode("utf-8")

    one()
    assert state.ledger.counts().entries > 0
    render_and_check(state)


@st.composite
def event_bodies(draw: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": draw(
            st.one_of(
                st.sampled_from(EVENT_TYPES),
                values,
            )
        ),
        "uuid": draw(st.one_of(st.uuids().map(str), texts, values)),
    }
    for key in ("name", "hostname", "queue", "routing_key", "exception", "parent_id", "eta"):
        if draw(st.booleans()):
            event[key] = draw(values)
    for key in ("timestamp", "runtime", "retries", "processed", "utcoffset", "clock"):
        if draw(st.booleans()):
            event[key] = draw(st.one_of(st.floats(), st.integers(), values))
    return event


@st.composite
def event_messages(draw: Any) -> bytes:
    """A kombu envelope (as the lean Redis consumer reads it) around hostile event bodies."""
    body = draw(st.one_of(event_bodies(), st.lists(event_bodies(), max_size=3), values))
    text = dumps(body)
    envelope: dict[str, Any] = {
        "body": base64.b64encode(text).decode(),
        "content-encoding": draw(st.sampled_from(["utf-8", "binary", None])),
        "content-type": draw(st.sampled_from(["application/json", "x", None])),
        "headers": draw(st.one_of(st.just({}), values)),
        "properties": draw(st.one_of(st.just({"body_encoding": "base64"}), values)),
    }
    return dumps(envelope)


class NoStream:
    def __init__(self, *_: Any) -> None:
        pass

    def stop(self) -> None:
        pass


def test_event_decoders_are_total_and_what_they_count_renders() -> None:
    state = new_state()
    source = EventsSource(state, NoStream, StartGate())
    decoder = EventDecoder(now=lambda: 1_700_000_000.0)

    @SETTINGS
    @given(st.one_of(event_messages(), st.binary(max_size=64)), event_bodies())
    def one(message: bytes, body: dict[str, Any]) -> None:
        events: list[dict[str, Any]] = []
        decoder.decode(message, 0.0, events)  # the lean Redis consumer's path
        source.handle_many(events, decoder.take_counts())
        # Celery's receiver hands over what kombu's json decoded: surrogates included.
        try:
            parsed = json.loads(dumps(body))
        except RecursionError:
            return  # kombu would refuse it before our code sees it
        parsed["local_received"] = 1_700_000_000.0
        source.handle(parsed)

    one()
    source.flush()
    render_and_check(state)


@st.composite
def saved_states(draw: Any) -> dict[str, Any]:
    labels = st.one_of(st.sampled_from(["t.add", "celery", "KeyError", "w@h"]), texts, values)
    counts = st.one_of(st.integers(0, 10**6), values)
    counters = st.sampled_from(["succeeded", "failed", "retried", "bogus"])

    def rows(*cols: Any) -> Any:
        return st.lists(st.one_of(st.tuples(*cols).map(list), values), max_size=4)

    hist = st.one_of(
        st.tuples(st.lists(st.integers(0, 100), min_size=5, max_size=5), st.floats()).map(list),
        values,
    )
    state = {
        "v": 1,
        "watermark": draw(st.one_of(st.floats(), values)),
        "tasks": draw(rows(labels, labels, counters, counts)),
        "by_worker": draw(rows(labels, labels, counters, labels, counts)),
        "exceptions": draw(rows(labels, labels, counts)),
        "runtime": draw(rows(labels, labels, hist)),
        "wait": draw(rows(labels, labels, hist)),
        "evictions": draw(counts),
        "pass": draw(st.one_of(st.tuples(texts, counts, st.floats()).map(list), values)),
    }
    for key in list(state):
        if key != "v" and draw(st.integers(0, 9)) == 0:
            state[key] = draw(values)  # the wrong type altogether
    seen = draw(
        st.dictionaries(
            st.text(max_size=8),
            st.one_of(
                st.builds(
                    lambda s, r, t, n, q: "\x1f".join((s, r, t, n, q)),
                    st.sampled_from(["8", "24", "-1", "999999", "x"]),
                    st.sampled_from(["0.0.0", "1.0.1", "-1.0.0", "a"]),
                    st.sampled_from(["", "1700000000.0", "nan", "inf", "1e400"]),
                    texts,
                    texts,
                ),
                texts,
            ),
            max_size=4,
        )
    )
    return {"counters": state, "seen": seen}


def test_saved_state_loader_is_total_and_what_it_loads_renders() -> None:
    from exporter.keeper.store import LedgerStore

    state = new_state(task_worker_label=True)
    redis = fakeredis.FakeRedis()
    store = LedgerStore(redis, "", "x")

    @settings(SETTINGS, max_examples=40)
    @given(saved_states())
    def one(data: dict[str, Any]) -> None:
        # Through the store, as a restart reads it (JSON with escaped surrogates)...
        redis.set(store.counters_key, dumps(data["counters"]))
        redis.delete(store.seen_key)
        for key, value in data["seen"].items():
            redis.hset(
                store.seen_key, key.encode("utf-8", "replace"), value.encode("utf-8", "replace")
            )
        store.load(state.ledger)
        # ...and as plain data, whatever shape it has.
        state.ledger.import_state(data)
        state.ledger.import_state({"counters": data["seen"], "seen": data["counters"]})

    one()
    for counts in (state.ledger.counts().tasks, state.ledger.counts().exceptions):
        assert all(isinstance(v, int) and v >= 0 for v in counts.values())
    render_and_check(state)
    store.save(state.ledger)  # what it saves now is clean, and loads back the same
    again = new_state(task_worker_label=True)
    store.load(again.ledger)
    assert again.ledger.counts().tasks == state.ledger.counts().tasks
