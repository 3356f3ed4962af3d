"""The collector pause of a reconcile pass always ends, exception or not, and nests."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from exporter.config import Config
from exporter.gcpause import gc_paused, settle
from exporter.keeper.gate import StartGate
from exporter.sources.reconcile import ReconcileSource
from exporter.state import State


@pytest.fixture(autouse=True)
def gc_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_restored_after_an_exception() -> None:
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_nested_pauses_end_with_the_outermost() -> None:
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_left_off_when_it_was_off() -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


class Failing(fakeredis.FakeRedis):
    """A backend whose connections all fail: the pass falls back to the client, which fails."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        assert not gc.isenabled()  # paused during the pass
        raise ConnectionError("backend gone")


def test_reconcile_pass_pauses_and_restores_on_redis_error() -> None:
    server = fakeredis.FakeServer()
    fakeredis.FakeRedis(server=server).set("celery-task-meta-a", b'{"status": "SUCCESS"}')
    server.connected = False
    client = Failing(server=server)
    state = State(Config(broker_url="redis://localhost:6379/0"))
    rec = ReconcileSource(state, lambda: client, StartGate())
    with pytest.raises(ConnectionError):
        rec.run_once()
    assert gc.isenabled()


def test_freed_heap_is_trimmed_once_when_the_outermost_pause_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from exporter import gcpause

    calls: list[int] = []
    monkeypatch.setattr(gcpause, "_malloc_trim", lambda pad: calls.append(pad) or 1)
    with gc_paused():
        with gc_paused():
            pass
        assert calls == []  # an inner pause ending is not the end of the job
    assert calls == [0]
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert calls == [0, 0]


def test_trim_is_the_real_glibc_call_on_linux() -> None:
    import platform

    from exporter.gcpause import trim_heap

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    assert trim_heap() is True


def test_large_blocks_are_mapped_on_their_own_on_glibc() -> None:
    import platform

    from exporter.gcpause import map_large_blocks

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert map_large_blocks()  # mallopt answers 1 when it took the setting


def test_settle_collects_garbage_then_freezes_what_is_left() -> None:
    class Node:
        me: object

    garbage, kept = Node(), Node()
    garbage.me, kept.me = garbage, kept  # two cycles: one unreachable, one alive
    gone = weakref.ref(garbage)
    del garbage
    try:
        settle()
        assert gone() is None  # collected, not frozen
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects())  # out of every walk
    finally:
        gc.unfreeze()


def test_the_daemon_settles_once_after_its_first_poll_and_pass_when_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from exporter import daemon as daemon_module
    from exporter.daemon import Daemon

    calls: list[int] = []
    monkeypatch.setattr(daemon_module, "settle", lambda: calls.append(1))
    d = Daemon(Config(result_backend=None))
    try:
        monkeypatch.setattr(d.poller, "poll", lambda: None)
        monkeypatch.setattr(d.inspected, "run", lambda: None)
        monkeypatch.setattr(d.state.trends, "sample", lambda *a: None)
        d._poll()
        d._after_pass()
        assert calls == []  # not armed: a test's own process is never frozen
        d._settle_after = {"poll", "reconcile"}  # (what run() arms)
        d._poll()
        d._poll()
        assert calls == [1]
        d._after_pass()
        d._after_pass()
        assert calls == [1, 1]
    finally:
        d.io.close()
