"""The collector pause of a reconcile pass always ends, exception or not, and nests."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from exporter.config import Config
from exporter.gcpause import gc_paused
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
