"""The lean event consumer for a Redis broker: one PSUBSCRIBE, batches of replies, no kombu.

On Redis, Celery's event exchange is a fanout that kombu carries over PUBLISH to channels
named `<global_keyprefix>/<db>.<event exchange>/<routing key>`. This consumer subscribes to
the same pattern Celery's receiver would (`RedisEventSettings.pattern`, computed from the
app's configuration in `celery_io/events.py`) on a plain redis-py connection, reads it with
the batch loop shared with the result listener (`exporter/pubsub_batch.py`: every reply
buffered per wake-up, after a 200 ms linger, so one wake-up serves many messages even when
each event is its own message), decodes them with
`event_envelope.EventDecoder` and hands the whole batch to the events source at once.

Nothing is declared on the broker: no queue, no binding in `_kombu.binding.<exchange>`, so a
dead exporter leaves nothing behind. Like `EventStream` it runs on a background thread,
reconnects with exponential backoff, logs an outage once, reports its state through
`on_state` and stops at once (`pubsub_batch.Waker`). Redis Sentinel is resolved with redis-py's
Sentinel client, to the master, on every (re)connect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedSSLConnection

from exporter.celery_io.event_envelope import EventDecoder
from exporter.outage import Backoff, OutageLog
from exporter.pubsub_batch import LINGER, Message, Waker, read_batches

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[dict[str, Any]], dict[str, int]], None]


@dataclass(frozen=True)
class RedisEventSettings:
    """Plain data: where to connect and what to subscribe to (no Celery objects)."""

    pattern: str  # PSUBSCRIBE pattern, exactly as kombu's Redis channel would subscribe
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0  # pub/sub ignores it; the lean inspect's reply lists live there
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: dict[str, Any] | None = None  # redis-py SSLConnection keyword arguments; None: no TLS
    sentinels: tuple[tuple[str, int], ...] = ()  # non-empty: resolve the master through these
    master_name: str = ""
    sentinel_kwargs: dict[str, Any] | None = field(default=None, repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 10.0  # a reply started but not finished within this: reconnect
    health_interval: float = 15.0  # PING after this long without a message; twice: reconnect
    client_name: str | None = None


def connect(
    settings: RedisEventSettings,
) -> tuple[redis.connection.AbstractConnection, Callable[[], None]]:
    """A connected redis-py connection (RESP2, one attempt; the caller retries) and what
    closes it, with the Sentinel connections used to find the master."""
    kwargs: dict[str, Any] = {
        "db": settings.db,
        "username": settings.username,
        "password": settings.password,
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.read_timeout,
        "socket_keepalive": True,
        "client_name": settings.client_name,
        "protocol": 2,
        "retry": Retry(NoBackoff(), 0),
    }
    if not settings.sentinels:
        if settings.ssl is not None:
            conn: Any = redis.SSLConnection(
                host=settings.host, port=settings.port, **kwargs, **settings.ssl
            )
        else:
            conn = redis.Connection(host=settings.host, port=settings.port, **kwargs)
        try:
            conn.connect()
        except BaseException:
            conn.disconnect()
            raise
        return conn, conn.disconnect

    sentinel = Sentinel(
        list(settings.sentinels), sentinel_kwargs=settings.sentinel_kwargs, **kwargs
    )
    extra: dict[str, Any] = {}
    if settings.ssl is not None:
        extra = {"connection_class": SentinelManagedSSLConnection, **settings.ssl}
    client = sentinel.master_for(settings.master_name, redis.Redis, **extra)

    def close() -> None:
        client.connection_pool.disconnect()
        for node in sentinel.sentinels:
            node.close()

    try:
        conn = client.connection_pool.get_connection()
        conn.connect()
    except BaseException:
        close()
        raise
    return conn, close


class RedisEventStream:
    """Consumes Celery events from a Redis broker and hands them over in batches."""

    def __init__(
        self,
        settings: RedisEventSettings,
        handler: BatchHandler,
        on_state: Callable[[bool, str | None], None],
        *,
        utcoffset: Callable[[], float],
        wakeup: Callable[[], None] | None = None,
        enable_events: Callable[[], None] | None = None,
        linger: float = LINGER,
        retry_interval: float = 0.0,
    ) -> None:
        self.settings = settings
        self.retry_interval = retry_interval
        self._handler = handler
        self._on_state = on_state
        self._utcoffset = utcoffset
        self._wakeup = wakeup
        self._enable_events = enable_events
        self.linger = linger
        self.sleep: Callable[[float], object] = time.sleep  # tests count the lingers
        self.decoder = EventDecoder()
        self._stopping = threading.Event()
        self._waker = Waker()  # ends the read loop's sleep when stopped

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; reconnect with backoff (--retry-interval) on any failure."""
        backoff = Backoff.paced(self.retry_interval)
        outage = OutageLog(log, "event receiver")
        log.info("events: lean Redis consumer, PSUBSCRIBE %s", self.settings.pattern)
        while not (stop.is_set() or self._stopping.is_set()):
            close: Callable[[], None] | None = None
            try:
                conn, close = connect(self.settings)
                conn.send_command("PSUBSCRIBE", self.settings.pattern)
                self._await_subscribed(conn)
                self._on_state(True, None)
                outage.ok()
                backoff.reset()
                if self._wakeup is not None:
                    self._wake_workers()
                self._consume(conn, stop)
            except Exception as exc:  # broker blips must never kill the thread
                if stop.is_set() or self._stopping.is_set():
                    break
                delay = backoff.next()
                outage.failed(f"{type(exc).__name__}: {exc}", delay)
                self._on_state(False, f"{type(exc).__name__}: {exc}")
                stop.wait(delay)
            finally:
                if close is not None:
                    close()
        self._on_state(False, None)

    def stop(self) -> None:
        self._stopping.set()
        self._waker.set()

    def enable_events(self) -> None:
        """Broadcast `enable_events` so workers started without -E send task events."""
        if self._enable_events is not None:
            self._enable_events()

    def _wake_workers(self) -> None:
        """Ask workers for a heartbeat now, as Celery's receiver does when it starts."""
        assert self._wakeup is not None
        try:
            self._wakeup()
        except Exception as exc:  # workers show up with their next heartbeat anyway
            log.debug("heartbeat broadcast failed: %s", exc)

    def _await_subscribed(self, conn: Any) -> None:
        reply = conn.read_response()
        if not (isinstance(reply, list) and reply and reply[0] == b"psubscribe"):
            raise redis.ConnectionError(f"unexpected reply to PSUBSCRIBE: {reply!r:.200}")

    def _consume(self, conn: Any, stop: threading.Event) -> None:
        decode = self.decoder.decode
        decoder = self.decoder
        handler = self._handler
        utcoffset = self._utcoffset

        def handle(batch: list[Message]) -> None:
            events: list[dict[str, Any]] = []
            here = utcoffset()
            for _channel, data in batch:
                decode(data, here, events)
            counts = decoder.take_counts() if decoder.skipped or decoder.errors else {}
            if events or counts:
                handler(events, counts)

        read_batches(
            conn,
            lambda: stop.is_set() or self._stopping.is_set(),
            handle,
            linger=self.linger,
            sleep=self.sleep,
            health_interval=self.settings.health_interval,
            waker=self._waker,
        )
