"""The tracked worker hosts on their own: the cap, who makes room for whom, and the order of
goodbyes against heartbeats, task events and inspect answers. Fake clock, no threads."""

from __future__ import annotations

import logging

import pytest

from exporter.clock import FakeClock
from exporter.workerhosts import LOG_EVERY, WorkerHosts


@pytest.fixture
def hosts() -> WorkerHosts:
    return WorkerHosts(3, FakeClock())


def test_the_cap_refuses_strangers_and_counts_them(hosts: WorkerHosts) -> None:
    for i in range(10):
        hosts.beat(f"s{i}", 100.0 + i)
    assert hosts.hosts() == {"s0", "s1", "s2"}
    assert hosts.dropped == 7
    assert hosts.beat("s9", 200.0) == (False, False)
    assert hosts.beat("s0", 200.0) == (True, False)  # a tracked one keeps beating
    assert hosts.dropped == 8


def test_confirmed_hosts_evict_the_stalest_stranger_never_the_reverse(hosts: WorkerHosts) -> None:
    hosts.beat("old", 100.0)
    hosts.beat("mid", 150.0)
    hosts.beat("new", 200.0)
    assert hosts.answered(["w1"], 300.0) == {"w1"}
    assert hosts.hosts() == {"mid", "new", "w1"}
    tracked, _ = hosts.task_events({"w2": 301.0})
    assert tracked == {"w2"} and hosts.hosts() == {"new", "w1", "w2"}
    assert hosts.answered(["w3", "w1"], 310.0) == {"w3", "w1"}
    assert hosts.hosts() == {"w1", "w2", "w3"}
    assert hosts.dropped == 3
    # Only confirmed hosts now: nobody makes room, for a stranger or a confirmed newcomer.
    assert hosts.beat("s", 400.0) == (False, False)
    assert hosts.answered(["w4"], 400.0) == set()
    assert hosts.task_events({"w5": 400.0})[0] == set()
    assert hosts.hosts() == {"w1", "w2", "w3"} and hosts.dropped == 6


def test_a_stranger_that_answers_inspect_becomes_confirmed(hosts: WorkerHosts) -> None:
    for name in ("a", "b", "c"):
        hosts.beat(name, 100.0)
    hosts.answered(["a"], 110.0)
    hosts.task_events({"b": 111.0})
    hosts.answered(["d"], 120.0)  # evicts c, the only stranger left
    hosts.answered(["e"], 121.0)  # nothing to evict
    assert hosts.hosts() == {"a", "b", "d"}
    assert all(v.confirmed for v in hosts.view().values())


def test_goodbye_against_heartbeats_by_the_workers_timestamps(hosts: WorkerHosts) -> None:
    hosts.beat("w", 100.0)
    assert hosts.offline("w", 110.0, received=500.0) is True
    assert hosts.view()["w"].offline and hosts.view()["w"].seen == 110.0
    assert hosts.offline("w", 110.0, received=501.0) is False  # a duplicate changes nothing
    assert hosts.beat("w", 109.0) == (True, False)  # sent before the goodbye
    assert hosts.task_events({"w": 110.0}) == ({"w"}, False)  # not after it either
    assert hosts.view()["w"].offline
    assert hosts.beat("w", 111.0) == (True, True)  # newer: back
    assert not hosts.view()["w"].offline
    # A goodbye older than a heartbeat already seen is stale (a previous incarnation's).
    assert hosts.offline("w", 105.0, received=502.0) is False
    assert not hosts.view()["w"].offline
    assert hosts.offline("w", 120.0, received=503.0) is True
    assert hosts.task_events({"w": 121.0}) == ({"w"}, True)


def test_goodbye_against_inspect_by_when_the_poll_started(hosts: WorkerHosts) -> None:
    hosts.answered(["w"], 1000.0)
    hosts.offline("w", 1001.0, received=1000.4)
    hosts.answered(["w"], 1000.0)  # the poll began before the goodbye was handled
    assert hosts.view()["w"].offline
    hosts.answered(["w"], 1000.4)  # the same instant is not after it
    assert hosts.view()["w"].offline
    hosts.answered(["w"], 1010.0)
    assert not hosts.view()["w"].offline


def test_a_goodbye_from_an_untracked_host_takes_no_slot(hosts: WorkerHosts) -> None:
    assert hosts.offline("ghost", 1.0, received=1.0) is False
    assert hosts.hosts() == set() and hosts.dropped == 0


def test_forget_frees_a_slot(hosts: WorkerHosts) -> None:
    for name in ("a", "b", "c"):
        hosts.answered([name], 1.0)
    hosts.forget("b")
    assert hosts.beat("s", 2.0) == (True, False)


def test_one_log_line_per_minute_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    hosts = WorkerHosts(1, clock)
    hosts.beat("a", 1.0)
    with caplog.at_level(logging.WARNING, logger="exporter.workerhosts"):
        for i in range(500):
            hosts.beat(f"s{i}\n\x1b[31m", 1.0)
        clock.advance(LOG_EVERY - 1)
        hosts.beat("late", 1.0)
        clock.advance(1)
        hosts.beat("later", 1.0)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "'s0\\n\\x1b[31m'" in lines[0]  # a hostile name is quoted, never raw
    assert "(500 more since the previous such line" in lines[1]
    assert "--max-workers 1" in lines[0]
