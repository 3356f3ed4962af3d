"""The one place that imports Celery and kombu: everything else in the exporter is plain data.

`CeleryIO` holds the Celery app built from the Config. The modules beside this one each own one
kind of round trip: `inspect` (broadcasts), `depth` (queue depth per transport), `events`
(the event receiver), `control` (revoke, re-send, purge).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from celery import Celery

from exporter.cluster import BrokerUnavailable
from exporter.config import Config

log = logging.getLogger(__name__)


def make_app(config: Config) -> Any:
    """A Celery app that talks to the configured broker and never unpickles anything."""
    app = Celery("celery-ops-exporter", broker=config.broker_url, set_as_current=False)
    accept = [c for c in config.accept_content if c != "pickle"] or ["json"]
    app.conf.update(
        broker_transport_options=dict(config.broker_transport_options),
        broker_use_ssl=dict(config.broker_ssl_options) or None,
        accept_content=accept,
        event_serializer="json",
        task_serializer="json",
        # We report outages ourselves; never block a poll on kombu's endless retry loop.
        broker_connection_retry=False,
        broker_connection_retry_on_startup=False,
        broker_connection_max_retries=0,
        broker_connection_timeout=max(1.0, config.inspect_timeout * 2),
        broker_heartbeat=0,
    )
    return app


class CeleryIO:
    """Owns the Celery app; the daemon passes it to whatever makes a round trip to Celery."""

    def __init__(self, config: Config, app: Any = None) -> None:
        self.config = config
        self._app = app
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        with self._lock:
            if self._app is None:
                self._app = make_app(self.config)
            return self._app

    def close(self) -> None:
        """Drop pooled broker connections; the next use reconnects. The app object stays:
        the event receiver and the API hold it too, and must reconnect with it."""
        with self._lock:
            app = self._app
        if app is not None:
            _drop_pools(app)


class CeleryReader:
    """The poller's `ClusterReader`, backed by a real broker. One broker connection is kept
    from poll to poll for the inspect broadcasts and the queue depths (one poll at a time:
    the poll job never overlaps itself).

    On a Redis broker the broadcasts and depths go through `redis_pidbox.PidboxBroadcaster`
    (kombu's wire format on a plain redis-py connection); otherwise, or with `lean=False`,
    through kombu's Mailbox (`inspect.inspect_cluster`)."""

    def __init__(self, io: CeleryIO, lean: bool = True) -> None:
        self._io = io
        self._conn: Any = None
        self._lean: Any = None
        self._lean_checked = not lean
        self.path = ""  # which path the broadcasts take, and why (logged once)

    def _broadcaster(self) -> Any:
        if not self._lean_checked:
            from exporter.celery_io.pidbox_layout import pidbox_settings
            from exporter.celery_io.redis_pidbox import PidboxBroadcaster

            self._lean_checked = True
            settings, why = pidbox_settings(self._io.app)
            if settings is not None:
                self._lean = PidboxBroadcaster(settings)
                self.path = "lean Redis pidbox"
            else:
                self.path = f"kombu's mailbox ({why})"
            log.info("inspect broadcasts: %s", self.path)
        return self._lean

    def inspect(self, timeout: float, expected: int | None = None) -> Any:
        from exporter.celery_io.inspect import inspect_cluster

        lean = self._broadcaster()
        if lean is not None:
            return lean.inspect(timeout, expected)
        app = self._io.app
        held, self._conn = self._conn, None  # inspect_cluster releases it if it fails
        if held is not None:
            try:
                reply, self._conn = inspect_cluster(app, timeout, expected, held)
                return reply
            except BrokerUnavailable:
                pass  # held since the last poll, it may be stale: a fresh one decides
        reply, self._conn = inspect_cluster(app, timeout, expected)
        return reply

    def depths(self, queues: list[str]) -> Any:
        from exporter.celery_io.depth import read_depths

        cfg = self._io.config
        lean = self._broadcaster()
        if lean is not None:
            return lean.depths(queues, cfg.inspect_timeout)
        try:
            return read_depths(
                self._io.app, cfg.broker_kind, queues, cfg.inspect_timeout, self._conn
            )
        except BaseException:
            self._release()
            raise

    def close(self) -> None:
        self._release()
        if self._lean is not None:
            self._lean.close()
        self._io.close()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.release()


def _drop_pools(app: Any) -> None:
    """Close the app's broker pools, take them out of kombu's process-wide registry, and make
    the app build new ones on next use (what Celery itself does after a fork).

    `app.pool` and the producer pool that broadcasts use are kombu's global pools keyed by
    broker URL. Closed but still registered and cached on the app, every later broadcast got
    "Acquire on closed pool": neither the poller nor the event receiver ever recovered from a
    broker restart.
    """
    from kombu import pools
    from kombu.utils.collections import eqhash

    key = app.connection_for_write()
    try:
        for group in (pools.producers, pools.connections):
            pool = group.pop(eqhash(key), None)
            if pool is not None:
                pool.force_close_all()
    finally:
        key.release()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
