"""The event consumer: a lean Redis subscriber when it can be one, else Celery's receiver.

`event_stream` picks it (`--events-consumer`): with `auto` on a Redis broker (redis://,
rediss://, sentinel://) it is `redis_events.RedisEventStream`, which PSUBSCRIBEs to the
channels kombu publishes Celery's events to (`lean_settings` computes them from the app's
configuration) and declares nothing on the broker. Otherwise (RabbitMQ, `celery`, a Unix
socket, Sentinel with `sentinel_fanout_compat`, a credential provider) it is `EventStream`,
Celery's own receiver run on a background thread with reconnect and backoff.

Celery's receiver uses a queue named `celeryev.celery-ops-exporter.<instance>`: stable per
exporter instance, so a restarted exporter re-declares the same queue instead of adding
another. Nothing is left behind to grow when the exporter dies (tests/integration/
test_sources_event_queue.py checks both brokers):
- RabbitMQ: Celery declares the queue exclusive and auto-delete with `x-expires`
  (`event_queue_expires`, 60 s): the broker deletes it when our connection drops.
- Redis with `--events-consumer celery`: Celery turns the event exchange into a fanout, which
  kombu carries over PUBLISH, so events for a dead receiver are dropped by the server, never
  stored. Only the binding set `_kombu.binding.celeryev` remembers receivers: the stable name
  keeps our share at one member, and kombu 5.7 sweeps members not refreshed for
  max(2 x expires, 1 h). The lean consumer adds no member at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from exporter.celery_io.redis_events import BatchHandler, RedisEventSettings, RedisEventStream
from exporter.outage import Backoff, OutageLog

log = logging.getLogger(__name__)

QUEUE_NODE_PREFIX = "celery-ops-exporter."


def queue_name(app: Any, instance: str) -> str:
    return f"{app.conf.event_queue_prefix}.{QUEUE_NODE_PREFIX}{instance}"


class EventStream:
    """Consumes Celery events and hands each (a dict with `type`) to `handler`."""

    def __init__(
        self,
        app: Any,
        instance: str,
        handler: Callable[[dict[str, Any]], None],
        on_state: Callable[[bool, str | None], None],
        retry_interval: float = 0.0,
    ) -> None:
        self.app = app
        self.instance = instance
        self.retry_interval = retry_interval
        self._handler = handler
        self._on_state = on_state
        self._receiver: Any = None
        self._lock = threading.Lock()
        self.chosen = ""  # why this consumer, logged when it starts

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; reconnect with backoff (--retry-interval) on any failure."""
        backoff = Backoff.paced(self.retry_interval)
        outage = OutageLog(log, "event receiver")
        if self.chosen:
            log.info("events: %s", self.chosen)
        while not stop.is_set():
            try:
                with self.app.connection_for_read() as conn:
                    conn.ensure_connection(max_retries=1)
                    receiver = self.app.events.Receiver(
                        conn,
                        handlers={"*": self._handler},
                        node_id=QUEUE_NODE_PREFIX + self.instance,
                    )
                    with self._lock:
                        self._receiver = receiver
                    if stop.is_set():
                        break
                    self._on_state(True, None)
                    outage.ok()
                    backoff.reset()
                    # consume() checks should_stop between 1 s drains, so stop() is prompt.
                    for _ in receiver.consume(limit=None, timeout=None, wakeup=True):
                        if stop.is_set():
                            break
            except Exception as exc:  # broker blips must never kill the thread
                delay = backoff.next()
                outage.failed(f"{type(exc).__name__}: {exc}", delay)
                self._on_state(False, f"{type(exc).__name__}: {exc}")
                stop.wait(delay)
            finally:
                with self._lock:
                    self._receiver = None
        self._on_state(False, None)

    def stop(self) -> None:
        with self._lock:
            if self._receiver is not None:
                self._receiver.should_stop = True

    def enable_events(self) -> None:
        """Broadcast `enable_events` so workers started without -E send task events."""
        self.app.control.enable_events()


def lean_settings(app: Any) -> tuple[RedisEventSettings | None, str]:
    """What the lean consumer needs for this app's broker, or None and why it cannot be used.

    The channel is built as kombu's Redis channel builds it (kombu/transport/redis.py:
    `keyprefix_fanout` '/{db}.' or the `fanout_prefix` option, formatted with the db number;
    `/<routing key>` when `fanout_patterns`, where the receiver's '#' becomes '*'); kombu's
    prefixing client puts `global_keyprefix` in front of PUBLISH and PSUBSCRIBE channels.
    """
    conn = app.connection_for_read()
    try:
        scheme = str(conn.transport_cls)
        opts = dict(conn.transport_options or {})
        if scheme not in ("redis", "rediss", "sentinel"):
            return None, f"broker transport {scheme!r} is not Redis"
        if "://" in (conn.hostname or ""):
            return None, "a Unix socket broker URL"
        if opts.get("credential_provider") or getattr(conn, "credential_provider", None):
            return None, "a credential provider"
        if scheme == "sentinel" and opts.get("sentinel_fanout_compat"):
            return None, "sentinel_fanout_compat (events on two channels)"
        if scheme == "sentinel" and not opts.get("master_name"):
            return None, "no master_name transport option"
        topic = fanout_prefix(conn) + str(app.conf.event_exchange)
        if opts.get("fanout_patterns", True):
            topic += "/*"
        ssl = conn.ssl
        settings = RedisEventSettings(
            pattern=str(opts.get("global_keyprefix", "")) + topic,
            host=conn.hostname or "127.0.0.1",
            port=int(conn.port or (26379 if scheme == "sentinel" else 6379)),
            db=_db_number(conn.virtual_host),
            username=conn.userid or None,
            password=conn.password or None,
            ssl=dict(ssl) if isinstance(ssl, dict) else ({} if ssl or scheme == "rediss" else None),
            sentinels=_sentinels(conn) if scheme == "sentinel" else (),
            master_name=str(opts.get("master_name", "")),
            sentinel_kwargs=opts.get("sentinel_kwargs"),
            connect_timeout=float(opts.get("socket_connect_timeout") or 5.0),
            client_name=opts.get("client_name"),
        )
        return settings, ""
    finally:
        conn.release()


def fanout_prefix(conn: Any) -> str:
    """What kombu's Redis channel puts before a fanout exchange's name (after the global
    key prefix): `keyprefix_fanout` '/{db}.' or the `fanout_prefix` option, with the db."""
    prefix = dict(conn.transport_options or {}).get("fanout_prefix", True)
    keyprefix = prefix if isinstance(prefix, str) else ("/{db}." if prefix else "")
    return keyprefix.format(db=_db_number(conn.virtual_host))


def _db_number(vhost: Any) -> int:
    """kombu's Channel._prepare_virtual_host: '' or '/' is db 0, '/3' and '3' are 3."""
    if isinstance(vhost, int):
        return vhost
    if not vhost or vhost == "/":
        return 0
    return int(vhost[1:] if vhost.startswith("/") else vhost)


def _sentinels(conn: Any) -> tuple[tuple[str, int], ...]:
    """Every sentinel of a `sentinel://a;sentinel://b` URL, as kombu's SentinelChannel."""
    hosts = []
    for url in conn.alt or []:
        parts = urlsplit(url)
        if parts.scheme == "sentinel":
            hosts.append((parts.hostname or "127.0.0.1", parts.port or 26379))
    return tuple(hosts) or ((conn.hostname or "127.0.0.1", int(conn.port or 26379)),)


def event_stream(
    app: Any,
    instance: str,
    consumer: str,
    handler: Callable[[dict[str, Any]], None],
    on_state: Callable[[bool, str | None], None],
    batch_handler: BatchHandler,
    retry_interval: float = 0.0,
) -> EventStream | RedisEventStream:
    """The lean Redis consumer when `consumer` is auto and it applies, else Celery's."""
    from celery.utils.time import utcoffset

    # Which one is logged when it starts: a bad --port must still fail in one line.
    settings, why = lean_settings(app) if consumer == "auto" else (None, "--events-consumer")
    if settings is None:
        stream = EventStream(app, instance, handler, on_state, retry_interval)
        stream.chosen = f"Celery's event receiver ({why})"
        return stream
    return RedisEventStream(
        settings,
        batch_handler,
        on_state,
        utcoffset=utcoffset,
        wakeup=lambda: app.control.broadcast("heartbeat"),
        enable_events=app.control.enable_events,
        retry_interval=retry_interval,
    )
