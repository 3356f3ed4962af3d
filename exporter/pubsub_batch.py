"""Reading a subscribed Redis connection in batches: the one read loop of every pub/sub source.

Both pub/sub consumers (the lean event consumer, `celery_io/redis_events.py`, and the result
pub/sub listener, `sources/results.py`) read their PSUBSCRIBE connection here. One wake-up
drains every reply already buffered (hiredis parses them), up to `MAX_BATCH`, and hands the
`pmessage` replies to the caller as one list of (channel, data), which the caller decodes
and applies at once (one ledger lock per batch). After a wake-up the loop lingers `LINGER`
so that one wake-up serves many messages even when every event or result is its own
message; never after a full batch, when more is already waiting.

Plain redis-py connections only (`can_read`, `read_response`, `send_command`): no Celery,
no kombu, so `sources/` may use it and `celery_io/` may too. RESP2 or RESP3: on RESP3 (redis-py
8's default) a message is a push reply (a `list` subclass), read with `push_request=True`,
or redis-py would hand it to its push handler and block for the next ordinary reply.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable
from typing import Any

WAIT = 0.5  # seconds between checks of the stop flag while nothing arrives (without a Waker)
MAX_BATCH = 2000  # replies handled per batch at most, so counters never lag far behind
# After a wake-up, let messages gather this long before reading them. Every wake-up costs
# about 25-30 us of CPU (poll, recv, the thread switch, cold caches) whatever it reads, and a
# worker without Celery's event buffer sends one message per event (and Celery's Redis
# backend one PUBLISH per result): lingering turns thousands of wake-ups a second into
# five, for 200 ms of delay no scrape can notice. At 300 events/s 50 ms halved the CPU per
# event against 10 ms; on the live bench (3,000 tasks, ~140 tasks/s, events and results),
# 100 ms cut the whole process's CPU by 18% and 200 ms by 27% against 50 ms, side by side
# (bench/RESULTS.md). No linger after a full batch: when messages arrive faster than one
# batch per linger, the loop reads back to back and Redis's pub/sub output buffer for us
# never grows.
LINGER = 0.2
# ...but only while messages flow: the first message after this long a quiet spell is read
# at once. A lone message (an idle worker's heartbeat, every 2 s) gathers nothing in a linger,
# and the linger's sleep was a second wake-up per message: on this 2-core VM a wake-up costs
# 50-100 us of CPU by itself (bench/RESULTS.md). A burst after a quiet spell pays one wake-up
# more (its first message alone); a steady stream, or many workers' heartbeats, lingers.
LINGER_AFTER = 1.0
HEALTH_INTERVAL = 15.0  # PING after this long without a message; no reply in twice: reconnect

Message = tuple[bytes, bytes]  # (channel, data) of one pmessage


class Waker:
    """What wakes a sleeping read loop at once when its source stops (a pipe: poll()-able)."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)

    def fileno(self) -> int:
        return self._read

    def set(self) -> None:
        with contextlib.suppress(OSError):  # full (already set) or closed
            os.write(self._write, b"x")

    def __del__(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


class NoPong(ConnectionError):
    """The server answered nothing, not even a PING, for twice the health interval."""


def read_batches(
    conn: Any,
    stopped: Callable[[], bool],
    handle: Callable[[list[Message]], object],
    *,
    linger: float = LINGER,
    max_batch: int = MAX_BATCH,
    health_interval: float = HEALTH_INTERVAL,
    tick: Callable[[], None] | None = None,
    waker: Waker | None = None,
    sleep: Callable[[float], object] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Read `conn` (already PSUBSCRIBEd) until `stopped()`; call `handle` once per wake-up
    with every pmessage read, in order (other replies: subscribe confirmations, PONGs, are
    dropped). `tick` runs after every wake-up or idle `WAIT`; with a `waker`, the loop sleeps
    until a message, `waker.set()` or the next health check instead of waking every `WAIT`
    (an idle exporter's listeners woke four times a second). Raises on a broken connection,
    or `NoPong` when a PING sent after `health_interval` of silence got no reply in as long
    again (a half-open socket). `sleep` and `monotonic` are injectable so tests see the
    lingers."""
    quiet_since = monotonic()
    ping_sent = False
    behind = False  # the last batch was full: more is waiting, read on without lingering
    poller = None
    sock = getattr(conn, "_sock", None)  # None: a stand-in connection, checked every WAIT
    if waker is not None and sock is not None:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(waker.fileno(), select.POLLIN)
    while not stopped():
        if poller is None:
            ready = conn.can_read(WAIT)
        elif conn.can_read(0):
            ready = True
        else:
            # Asleep until a message, the stop signal or the next health check is due.
            due = quiet_since + (2 if ping_sent else 1) * health_interval
            poller.poll(max(0.0, due - monotonic()) * 1000 + 10)
            ready = conn.can_read(0)
        if not ready:
            idle = monotonic() - quiet_since
            if ping_sent and idle > 2 * health_interval:
                raise NoPong(f"no reply to PING within {health_interval:.0f}s")
            if not ping_sent and idle > health_interval:
                conn.send_command("PING", check_health=False)
                ping_sent = True
            if tick is not None:
                tick()
            continue
        if linger and not behind and monotonic() - quiet_since < LINGER_AFTER:
            sleep(linger)
        fast = _hiredis_of(conn)  # per wake-up: a reconnect makes a new Reader
        if fast is not None:
            batch, behind = _drain_hiredis(fast, max_batch)
        else:
            batch, behind = _drain(conn, max_batch)
        quiet_since = monotonic()
        ping_sent = False
        handle(batch)
        if tick is not None:
            tick()


def _drain(conn: Any, max_batch: int) -> tuple[list[Message], bool]:
    """Every buffered pmessage through redis-py's read_response; (batch, more waiting)."""
    batch: list[Message] = []
    for _ in range(max_batch):
        reply = conn.read_response(push_request=True)
        if isinstance(reply, list) and len(reply) == 4 and reply[0] == b"pmessage":
            batch.append((reply[2], reply[3]))
        if not conn.can_read(0):
            return batch, False
    return batch, True


def _hiredis_of(conn: Any) -> tuple[Any, Any, Any] | None:
    """(parser, its hiredis Reader, the reader's not-enough-data marker) of a redis-py
    connection with the hiredis parser; None otherwise (the generic `_drain` is used)."""
    try:
        from redis._parsers import hiredis as parsers
    except ImportError:  # pragma: no cover (hiredis is a dependency)
        return None
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    if not isinstance(parser, parsers._HiredisParser) or reader is None:
        return None
    return parser, reader, parsers.NOT_ENOUGH_DATA


def _drain_hiredis(fast: tuple[Any, Any, Any], max_batch: int) -> tuple[list[Message], bool]:
    """What `_drain` does, straight from the hiredis Reader: redis-py's read_response costs
    several Python frames per message (and on RESP3 a push handler that formats every message
    for a debug log line), about a quarter of the listeners' CPU under load. The socket is
    read only when the reader runs dry; error replies raise as redis-py raises them."""
    parser, reader, not_enough = fast
    batch: list[Message] = []
    gets, append = reader.gets, batch.append
    replies = 0
    while replies < max_batch:
        reply = gets()
        if reply is not_enough:
            if not parser.read_from_socket(timeout=0, raise_on_timeout=False):
                return batch, False  # nothing more now (a message may be half read)
            continue
        replies += 1
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, list) and len(reply) == 4 and reply[0] == b"pmessage":
            append((reply[2], reply[3]))
    return batch, True
