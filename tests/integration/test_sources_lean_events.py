"""The lean Redis event consumer against a real broker, Celery's publishers and real workers.

- It subscribes to the very channels kombu's Redis channel uses for Celery's receiver, for
  every setting that changes them (db, fanout_prefix, fanout_patterns, global_keyprefix,
  event_exchange), and receives what Celery's EventDispatcher publishes there.
- Fed the same published messages as Celery's receiver, it hands the events source the same
  dicts (minus `local_received` and `clock`, which are per receiver).
- With real workers its counts are exact, with and without global_keyprefix, and it leaves no
  binding in `_kombu.binding.celeryev`.
- A Redis restart: it reconnects, the outage is logged once. A pickle event is skipped and
  counted, never unpickled.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from exporter.celery_io import make_app
from exporter.celery_io.events import EventStream, event_stream, lean_settings
from exporter.celery_io.redis_events import RedisEventStream
from exporter.config import Config
from tests.support.common import wait_for
from tests.support.ledger import COUNTERS, ExporterProc, send_mix
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker, celery_app

pytestmark = pytest.mark.integration


class Collect:
    """Handlers for a stream: what it handed over, its counts and its state changes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.states: list[tuple[bool, str | None]] = []

    def single(self, event: dict[str, Any]) -> None:
        self.batch([event], {})

    def batch(self, events: list[dict[str, Any]], counts: dict[str, int]) -> None:
        with self.lock:
            self.events.extend(events)
            self.counts.update(counts)

    def state(self, up: bool, error: str | None) -> None:
        with self.lock:
            self.states.append((up, error))

    def seen(self, **match: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if all(e.get(k) == v for k, v in match.items())]

    def up(self) -> bool:
        with self.lock:
            return bool(self.states) and self.states[-1][0]


class Running:
    """A stream on its own thread, stopped by the fixture."""

    def __init__(self) -> None:
        self.started: list[tuple[Any, threading.Event, threading.Thread]] = []

    def start(self, app: Any, consumer: str = "auto", **kwargs: Any) -> tuple[Any, Collect]:
        got = Collect()
        stream = event_stream(app, "lean-test", consumer, got.single, got.state, got.batch)
        for key, value in kwargs.items():
            setattr(stream, key, value)
        stop = threading.Event()
        thread = threading.Thread(target=stream.run, args=(stop,), daemon=True)
        thread.start()
        self.started.append((stream, stop, thread))
        wait_for(got.up, 20, what="event stream up")
        return stream, got

    def stop_all(self) -> None:
        for stream, stop, thread in self.started:
            stop.set()
            stream.stop()
            thread.join(10)
            assert not thread.is_alive(), "stream did not stop"


@pytest.fixture
def running() -> Iterator[Running]:
    r = Running()
    yield r
    r.stop_all()


def app_for(url: str, exchange: str | None = None, **transport: Any) -> Any:
    app = make_app(Config(broker_url=url, broker_transport_options=transport))
    if exchange:
        app.conf.event_exchange = exchange
    return app


def publish(app: Any, events: list[tuple[str, dict[str, Any]]], **dispatcher: Any) -> None:
    with app.connection_for_write() as conn:
        d = app.events.Dispatcher(conn, hostname="celery@lean", enabled=True, **dispatcher)
        for kind, fields in events:
            d.send(kind, **fields)
        d.flush()
        d.close()


def probe_until_seen(app: Any, *collectors: Collect) -> None:
    """Publish a probe until every stream has it: each is subscribed from then on."""

    def all_seen() -> bool:
        publish(app, [("worker-heartbeat", {"probe": True})])
        return all(c.seen(probe=True) for c in collectors)

    wait_for(all_seen, 20, interval=0.2, what="probe seen by every stream")


CHANNEL_CASES = [
    ({}, None),
    ({"global_keyprefix": "app1:"}, None),
    ({"fanout_prefix": False}, None),
    ({"fanout_prefix": "/custom."}, None),
    ({"fanout_patterns": False}, None),
    ({"global_keyprefix": "pfx:", "fanout_patterns": False}, "myevents"),
]


@pytest.mark.parametrize(("transport", "exchange"), CHANNEL_CASES)
def test_subscribes_where_kombu_would_and_receives(
    redis_server: RedisServer, running: Running, transport: dict[str, Any], exchange: str | None
) -> None:
    url = f"{redis_server.url}/13"
    app = app_for(url, exchange, **transport)
    settings, why = lean_settings(app)
    assert settings is not None, why
    # kombu's own answer: the topics Celery's receiver queue subscribes to, prefixed as the
    # prefixing pub/sub client does.
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        receiver = app.events.Receiver(conn, handlers={}, node_id="kombu-topic-check")
        queue = receiver.queue(channel)
        queue.declare()
        try:
            topics = channel._get_subscribe_topics(queue.name)
            assert [channel.global_keyprefix + t for t in topics] == [settings.pattern]
        finally:
            queue.delete()
    stream, got = running.start(app)
    assert isinstance(stream, RedisEventStream)
    probe_until_seen(app, got)
    publish(app, [("task-started", {"uuid": "u1"})])
    wait_for(lambda: got.seen(uuid="u1"), 10, what="event through the lean consumer")


def test_same_dicts_as_celerys_receiver(redis_server: RedisServer, running: Running) -> None:
    url = f"{redis_server.url}/14"
    app = app_for(url)
    lean_stream, lean = running.start(app, "auto")
    celery_stream, celery = running.start(app_for(url), "celery")
    assert isinstance(lean_stream, RedisEventStream) and isinstance(celery_stream, EventStream)
    probe_until_seen(app, lean, celery)
    received = {"name": "tests.add", "args": "(1, 2)", "kwargs": "{}", "retries": 0, "eta": None}
    singles: list[tuple[str, dict[str, Any]]] = [
        ("task-sent", {"uuid": "s1", "name": "tests.add", "queue": "q1", "retries": 0}),
        ("task-received", {"uuid": "s1", **received}),
        ("task-started", {"uuid": "s1"}),
        ("task-succeeded", {"uuid": "s1", "result": "3", "runtime": 0.25}),
        ("task-failed", {"uuid": "s2", "exception": "ValueError('x')", "traceback": "tb"}),
        ("worker-heartbeat", {"processed": 4, "active": 0, "freq": 2.0}),
    ]
    publish(app, singles)
    # A sender two hours east of UTC: both receivers move its timestamps the same way.
    # (Only the buffered path of Dispatcher.send takes a utcoffset function.)
    with app.connection_for_write() as conn:
        d = app.events.Dispatcher(
            conn, hostname="celery@east", enabled=True, buffer_group=["task"], buffer_limit=1
        )
        d.send("task-retried", utcoffset=lambda: -2.0, uuid="s3", exception="Retry()")
        d.close()
    grouped = [("task-started", {"uuid": f"m{i}"}) for i in range(30)]
    publish(app, grouped, buffer_group=["task"], buffer_limit=24)  # task.multi messages
    want = len(singles) + 1 + len(grouped)

    def real(c: Collect) -> list[dict[str, Any]]:
        return [e for e in c.seen() if not e.get("probe")]

    wait_for(lambda: len(real(lean)) >= want and len(real(celery)) >= want, 20, what="events")

    def comparable(c: Collect) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in e.items() if k not in ("local_received", "clock")} for e in real(c)
        ]

    assert comparable(lean) == comparable(celery)
    assert len(comparable(lean)) == want
    east = lean.seen(uuid="s3")[0]
    assert abs(east["timestamp"] - east["local_received"]) == pytest.approx(2 * 3600, abs=60)
    for e in real(lean):
        assert isinstance(e["clock"], int) and isinstance(e["local_received"], float)


@pytest.fixture(scope="module")
def worker_broker() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.mark.parametrize("keyprefix", ["", "gk1:"])
def test_counts_exact_with_real_workers(
    worker_broker: RedisServer, unique: str, keyprefix: str
) -> None:
    """Events only (no result backend): every task counted exactly once through the lean
    consumer, and nothing declared on the broker for it."""
    db = 2 if keyprefix else 1
    broker = f"{worker_broker.url}/{db}"
    queue = f"lean-{unique}"
    env = {
        "TEST_BROKER_URL": broker,
        "TEST_BACKEND_URL": "",
        "TEST_DEFAULT_QUEUE": queue,
        "TEST_KEYPREFIX": keyprefix,
    }
    worker = Worker(env, queues=queue, pool="prefork", concurrency=2).wait_ready()
    app = celery_app(env)
    args = ["--broker-url", broker, "--result-backend", ""]
    if keyprefix:
        args += ["--broker-transport-option", f"global_keyprefix={keyprefix}"]
    exporter = ExporterProc(args, f"lean{unique}")
    client = redis.Redis(port=worker_broker.port, db=db)
    try:
        exporter.start()
        key = ("celery_exporter_source_up", (("source", "events"),))
        wait_for(lambda: exporter.samples().get(key) == 1.0, 30, what="events source up")
        assert "lean Redis consumer" in exporter.output()
        truth = send_mix(app, 300, queue)
        want = {c: truth[c] for c in COUNTERS}

        def exact() -> bool:
            got = exporter.counts()
            return all(got[c] == want[c] for c in COUNTERS)

        try:
            wait_for(exact, 90, interval=0.5, what=f"counters == {want}")
        except AssertionError:
            raise AssertionError(
                f"got {dict(exporter.counts())}, want {want}\n{exporter.output()[-2000:]}"
            ) from None
        samples = exporter.samples()
        received = sum(v for (n, _), v in samples.items() if n == "celery_task_received_total")
        # task-received of every task once (revoked ones are discarded before it is sent)
        assert received == 300 - truth["revoked"]
        bindings = client.smembers(f"{keyprefix}_kombu.binding.celeryev")
        assert not [m for m in bindings if b"celery-ops-exporter" in m], bindings
    finally:
        exporter.cleanup()
        worker.stop()
        app.close()
        client.flushdb()
        client.close()


def test_redis_restart_reconnects_and_logs_the_outage_once(
    private_redis: RedisServer, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.celery_io.redis_events")
    app = app_for(f"{private_redis.url}/0")
    _stream, got = running.start(app)
    probe_until_seen(app, got)
    private_redis.stop()

    def failures() -> int:
        with got.lock:
            return sum(1 for up, error in got.states if not up and error)

    wait_for(lambda: failures() >= 3, 30, what="several failed reconnects")
    private_redis.start()
    wait_for(got.up, 40, what="stream up again")
    publish(app, [("task-succeeded", {"uuid": "after", "runtime": 0.1})])
    wait_for(lambda: got.seen(uuid="after"), 10, what="events after the restart")
    records = [r for r in caplog.records if r.name == "exporter.celery_io.redis_events"]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "logged once per outage" in warnings[0].getMessage()
    assert any(r.levelno == logging.INFO and "back after" in r.getMessage() for r in records)


def test_pickle_event_is_skipped_and_counted_never_unpickled(
    redis_server: RedisServer, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exporter.keeper.gate import StartGate
    from exporter.sources.events import EventsSource
    from exporter.state import State

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("an event was unpickled")

    url = f"{redis_server.url}/12"
    app = app_for(url)
    state = State(Config(broker_url=url))
    boot = StartGate()
    boot.loaded.set()
    got = Collect()

    def factory(handler: Any, on_state: Any, batch: Any) -> Any:
        def both(events: list[dict[str, Any]], counts: dict[str, int]) -> None:
            batch(events, counts)
            got.batch(events, counts)

        return event_stream(app, "pickle-test", "auto", handler, on_state, both)

    source = EventsSource(state, factory, boot)
    source.start()
    try:
        wait_for(lambda: state.source_health()["events"].up, 20, what="events source up")
        probe_until_seen(app, got)
        monkeypatch.setattr(pickle, "loads", refuse)
        publish(app, [("task-succeeded", {"uuid": "pickled", "runtime": 1.0})], serializer="pickle")
        publish(app, [("task-succeeded", {"uuid": "json", "runtime": 1.0})])
        wait_for(lambda: got.seen(uuid="json"), 10, what="the JSON event after the pickle one")
        source.flush()
        detail = state.source_health()["events"].stats
        assert detail.skipped.get("pickle") == 1
        assert not got.seen(uuid="pickled")
    finally:
        source.stop()
