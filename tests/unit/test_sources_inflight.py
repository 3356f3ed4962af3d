"""InFlight: replies in order with one command ahead; a connection error falls back to the
client's own call; a pass ended with a reply unread does not hand that reply to the next
user of the connection."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import redis

from exporter.sources.inflight import InFlight


def client() -> fakeredis.FakeRedis:
    r = fakeredis.FakeRedis()
    r.mset({f"k{i}": f"v{i}" for i in range(10)})
    return r


def test_replies_in_order() -> None:
    r = client()
    ahead = InFlight(r)
    ahead.send("MGET", "k1", "k2", "nope")
    assert ahead.result() == [b"v1", b"v2", None]
    ahead.send("SCAN", 0, "MATCH", "k*", "COUNT", 100)
    cursor, keys = ahead.result()
    assert int(cursor) == 0 and len(keys) == 10
    with pytest.raises(RuntimeError):
        ahead.result()
    ahead.send("MGET", "k3")
    with pytest.raises(RuntimeError):
        ahead.send("MGET", "k4")  # one command at a time
    assert ahead.result() == [b"v3"]
    ahead.close()
    assert ahead.fallbacks == 0


class Flaky:
    """A connection whose socket dies on the first read (and works after a reconnect)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.disconnected = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if not self.disconnected:
            raise redis.ConnectionError("reset by peer")
        return self.real.read_response(*args, **kwargs)

    def disconnect(self, *args: Any) -> None:
        self.disconnected = True
        self.real.disconnect()


def test_connection_error_falls_back_to_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    r = client()
    pool = r.connection_pool
    flaky = Flaky(pool.get_connection())
    monkeypatch.setattr(pool, "get_connection", lambda *a, **k: flaky)
    monkeypatch.setattr(pool, "release", lambda conn: None)
    ahead = InFlight(r)
    ahead.send("MGET", "k5")
    assert ahead.result() == [b"v5"]  # answered through r.execute_command
    assert ahead.fallbacks == 1 and flaky.disconnected


def test_close_with_a_reply_unread_disconnects() -> None:
    r = client()
    ahead = InFlight(r)
    ahead.send("MGET", "k1")
    conn = ahead._conn
    ahead.close()  # e.g. the pass was stopped while a command was in flight
    assert conn is not None and conn._sock is None  # not handed back mid-reply
    assert r.mget("k2") == [b"v2"]  # the pool's next user is in step
