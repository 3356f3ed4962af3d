"""Worker liveness from events, end to end in process: events source -> State -> poller ->
/metrics and sitrep, on plain data and a fake clock.

A worker that sends worker-offline is down at once (no poll needed); a newer heartbeat,
worker-online or a later inspect answer brings it back; nothing older does. Forged heartbeats
from thousands of host names stay within --max-workers.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.api.sitrep import build_sitrep
from exporter.clock import FakeClock
from exporter.cluster import InspectReply
from exporter.collectors import build_registry
from exporter.config import Config
from exporter.keeper.gate import StartGate
from exporter.poller import Poller
from exporter.sources.events import EventsSource
from exporter.state import State
from tests.support.cluster import FakeReader

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class NullStream:
    def __init__(self, *_handlers: Any) -> None:
        pass


class Cluster:
    """A State with a poller on a FakeReader and an events source fed by hand."""

    def __init__(self, clock: FakeClock, **cfg: Any) -> None:
        self.clock = clock
        self.state = State(Config(**cfg), clock)
        self.reader = FakeReader()
        self.poller = Poller(self.state, self.reader)
        self.events = EventsSource(self.state, NullStream, StartGate())

    def event(self, kind: str, host: str, ts: float | None = None, **kw: Any) -> None:
        when = self.clock.time() if ts is None else ts
        self.events.handle_many([{"type": kind, "hostname": host, "timestamp": when, **kw}])

    def text(self) -> str:
        return generate_latest(build_registry(self.state)).decode()

    def samples(self) -> Samples:
        out: Samples = {}
        for family in text_string_to_metric_families(self.text()):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def up(self, host: str) -> float | None:
        return self.samples().get(("celery_worker_up", (("hostname", host),)))

    def queue_workers(self, queue: str) -> float | None:
        return self.samples().get(("celery_queue_workers", (("queue_name", queue),)))

    def workers(self) -> float | None:
        return self.samples().get(("celery_workers", ()))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def two_workers(clock: FakeClock, **cfg: Any) -> Cluster:
    c = Cluster(clock, worker_timeout=300.0, purge_offline_worker_metrics=600.0, **cfg)
    c.reader.add_worker("w1@h", queues=("q",))
    c.reader.add_worker("w2@h", queues=("other",))
    c.reader.set_queue("q", 5)
    c.poller.poll()
    assert c.up("w1@h") == 1 and c.queue_workers("q") == 1 and c.workers() == 2
    return c


def test_worker_offline_is_down_at_once_without_a_poll(clock: FakeClock) -> None:
    c = two_workers(clock)
    clock.advance(1)
    c.event("worker-offline", "w1@h")
    # No poll ran: the event alone took it out of every count, and its series stay (up 0).
    assert c.up("w1@h") == 0
    assert c.queue_workers("q") == 0
    assert c.samples()[("celery_queue_consumers", (("queue_name", "q"),))] == 0
    assert c.workers() == 1
    assert c.up("w2@h") == 1
    sitrep = build_sitrep(c.state)
    assert {w.hostname: w.up for w in sitrep.workers} == {"w1@h": False, "w2@h": True}
    assert any("start a worker with -Q q" in a for a in sitrep.immediate_actions)
    # The next poll (the worker is really gone) keeps it down, long before --worker-timeout.
    c.reader.remove_worker("w1@h")
    clock.advance(10)
    c.poller.poll()
    assert c.up("w1@h") == 0 and c.queue_workers("q") == 0


def test_an_offline_worker_is_purged_like_a_timed_out_one(clock: FakeClock) -> None:
    c = two_workers(clock)
    c.reader.remove_worker("w1@h")
    c.event("worker-offline", "w1@h")
    clock.advance(599)
    c.poller.poll()
    assert c.up("w1@h") == 0
    clock.advance(2)
    c.poller.poll()
    assert c.up("w1@h") is None  # series gone after --purge-offline-worker-metrics
    assert c.queue_workers("q") == 0  # the queue stays reported at 0


def test_an_inspect_answer_gathered_before_the_offline_event_does_not_revive(
    clock: FakeClock,
) -> None:
    c = two_workers(clock)

    class Racing(FakeReader):
        """The worker answers the broadcast, then says goodbye while the poll still waits."""

        def inspect(self, timeout: float, expected: int | None = None) -> InspectReply:
            reply = super().inspect(timeout, expected)
            clock.advance(0.3)
            c.event("worker-offline", "w1@h")
            return reply

    racing = Racing()
    racing.replies, racing.depth = c.reader.replies, c.reader.depth
    c.poller._reader = racing
    clock.advance(10)
    c.poller.poll()
    assert c.up("w1@h") == 0 and c.queue_workers("q") == 0
    # A poll that starts after the goodbye and still gets an answer: the worker is back.
    c.poller._reader = c.reader
    clock.advance(10)
    c.poller.poll()
    assert c.up("w1@h") == 1 and c.queue_workers("q") == 1


def test_only_a_newer_heartbeat_or_worker_online_brings_it_back(clock: FakeClock) -> None:
    c = two_workers(clock)
    c.reader.remove_worker("w1@h")
    t_off = clock.time() + 1
    clock.advance(2)
    c.event("worker-offline", "w1@h", ts=t_off)
    c.event("worker-heartbeat", "w1@h", ts=t_off - 0.5)  # sent before the goodbye
    assert c.up("w1@h") == 0
    clock.advance(10)
    c.poller.poll()
    assert c.up("w1@h") == 0
    c.event("worker-heartbeat", "w1@h", ts=clock.time())  # restarted: at once, no poll
    assert c.up("w1@h") == 1 and c.queue_workers("q") == 1
    c.event("worker-offline", "w1@h", ts=clock.time() + 0.1)
    assert c.up("w1@h") == 0
    clock.advance(1)
    c.event("worker-online", "w1@h", ts=clock.time())
    assert c.up("w1@h") == 1 and c.workers() == 2


def test_a_task_event_older_than_the_goodbye_does_not_revive(clock: FakeClock) -> None:
    c = two_workers(clock)
    t_off = clock.time()
    c.event("worker-offline", "w1@h", ts=t_off)
    c.events.handle_many(
        [{"type": "task-succeeded", "uuid": "x", "hostname": "w1@h", "timestamp": t_off - 1}]
    )
    assert c.up("w1@h") == 0


def test_a_sigkilled_worker_still_goes_down_by_the_timeout(clock: FakeClock) -> None:
    c = two_workers(clock)
    c.reader.remove_worker("w1@h")  # no goodbye: only silence
    clock.advance(299)
    c.poller.poll()
    assert c.up("w1@h") == 1 and c.queue_workers("q") == 1
    clock.advance(2)
    c.poller.poll()
    assert c.up("w1@h") == 0 and c.queue_workers("q") == 0


def test_offline_from_an_unknown_host_changes_nothing(clock: FakeClock) -> None:
    c = two_workers(clock)

    def workers_part() -> list[str]:  # the worker and queue series (event counters move)
        return [
            ln for ln in c.text().splitlines() if ln.startswith(("celery_worker", "celery_queue"))
        ]

    before = workers_part()
    c.event("worker-offline", "stranger@h")
    assert workers_part() == before
    c.poller.poll()
    assert c.up("stranger@h") is None


def forged(n: int, clock: FakeClock) -> list[dict[str, Any]]:
    return [
        {"type": "worker-heartbeat", "hostname": f"forged-{i}@evil", "timestamp": clock.time(),
         "processed": 0, "active": 0}
        for i in range(n)
    ]  # fmt: skip


def test_forged_heartbeats_from_5000_hosts_stay_within_the_cap(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    c = Cluster(clock)  # the default --max-workers
    c.reader.add_worker("real@h", queues=("q",))
    c.poller.poll()
    with caplog.at_level(logging.WARNING):
        for start in range(0, 5000, 500):
            c.events.handle_many(forged(5000, clock)[start : start + 500])
        clock.advance(10)
        c.poller.poll()
        c.events.handle_many(forged(5000, clock))  # they keep beating
        clock.advance(10)
        c.poller.poll()
    samples = c.samples()
    up = {k for k in samples if k[0] == "celery_worker_up"}
    assert len(up) == 1000
    assert samples[("celery_worker_up", (("hostname", "real@h"),))] == 1
    # 4,001 strangers refused per round of 5,000 heartbeats (999 slots were free).
    assert samples[("celery_exporter_workers_dropped_total", ())] == 4001 + 4001
    assert len(c.text()) < 400_000
    sitrep = build_sitrep(c.state)
    assert len(sitrep.workers) == 1000
    assert len(sitrep.model_dump_json()) < 400_000
    lines = [r for r in caplog.records if "--max-workers" in r.getMessage()]
    assert len(lines) == 1  # rate limited
    # The "-E is off" check keeps nothing about hosts that are not tracked.
    assert len(c.events.check._last_beat) <= 1000


def test_a_confirmed_worker_evicts_a_heartbeat_only_stranger(clock: FakeClock) -> None:
    c = Cluster(clock, max_workers=3)
    c.events.handle_many(forged(3, clock))
    clock.advance(1)
    c.events.handle_many(forged(2, clock))  # forged-0, forged-1 beat again: forged-2 is stalest
    c.poller.poll()
    assert c.workers() == 3
    c.reader.add_worker("real@h", queues=("q",))  # answers inspect: confirmed
    clock.advance(10)
    c.poller.poll()
    s = c.samples()
    hosts = {dict(k[1])["hostname"] for k in s if k[0] == "celery_worker_up"}
    assert hosts == {"real@h", "forged-0@evil", "forged-1@evil"}
    assert s[("celery_exporter_workers_dropped_total", ())] == 1
    # A worker seen only through its task events is confirmed too.
    c.events.handle_many(
        [{"type": "task-started", "uuid": "t1", "hostname": "busy@h", "timestamp": clock.time()}]
    )
    clock.advance(1)
    c.poller.poll()
    hosts = {dict(k[1])["hostname"] for k in c.samples() if k[0] == "celery_worker_up"}
    assert hosts == {"real@h", "busy@h", "forged-1@evil"}


def test_a_stranger_never_evicts_a_confirmed_worker(clock: FakeClock) -> None:
    c = Cluster(clock, max_workers=2)
    c.reader.add_worker("a@h")
    c.reader.add_worker("b@h")
    c.poller.poll()
    c.events.handle_many(forged(50, clock))
    clock.advance(1)
    c.poller.poll()
    s = c.samples()
    hosts = {dict(k[1])["hostname"] for k in s if k[0] == "celery_worker_up"}
    assert hosts == {"a@h", "b@h"}
    assert s[("celery_exporter_workers_dropped_total", ())] == 50
    # Confirmed newcomers are refused too once only confirmed hosts are tracked.
    c.reader.add_worker("c@h")
    clock.advance(1)
    c.poller.poll()
    assert c.up("c@h") is None
    assert c.samples()[("celery_exporter_workers_dropped_total", ())] == 51


def test_sitrep_names_a_few_down_workers_and_sums_up_the_rest(clock: FakeClock) -> None:
    c = Cluster(clock, worker_timeout=60.0)
    for i in range(30):
        c.reader.add_worker(f"w{i:02}@h")
    c.poller.poll()
    for i in range(25):
        clock.advance(1)
        c.event("worker-offline", f"w{i:02}@h")
    sitrep = build_sitrep(c.state)
    assert sum(1 for w in sitrep.workers if w.up) == 5
    down = [line for line in sitrep.watch_items if line.startswith("Worker ")]
    assert len(down) == 10
    assert down[0] == "Worker w24@h shut down (worker-offline) 0 ms ago."  # newest first
    assert "15 more workers are down; see the worker list." in sitrep.watch_items
