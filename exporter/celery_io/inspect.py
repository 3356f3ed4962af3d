"""Inspect broadcasts with bounded waits: the poller's view of what each worker is doing.

Each broadcast waits the whole timeout unless `limit` bounds the replies. The poller passes
`expected` (the workers it knows) so `stats` returns as soon as they all answered, and None
now and then to discover new workers by waiting the timeout; every later broadcast is bounded
by how many answered `stats`.

The connection is kept from one poll to the next (`CeleryReader` holds it): a new kombu
connection per poll cost a quarter of an idle exporter's poll CPU (connect, channel set-up,
and redis-py reading its own package metadata for every new socket), bench/RESULTS.md.
"""

from __future__ import annotations

import logging
from typing import Any

from exporter.cluster import BrokerUnavailable, InspectReply

log = logging.getLogger(__name__)

# Order matters: `stats` finds who is there; the rest are bounded by that count.
METHODS = ("stats", "active_queues", "active", "reserved", "scheduled")


def inspect_cluster(
    app: Any, timeout: float, expected: int | None = None, conn: Any = None
) -> tuple[InspectReply, Any]:
    """The replies, and the broker connection to use next time (`conn`, if given and still
    usable, else a new one). On failure the connection is released and the error raised."""
    replies: dict[str, dict[str, Any]] = {}
    unanswered: list[str] = []
    if conn is None:
        conn = _connect(app, timeout)
    try:
        found = expected or 0
        for method in METHODS:
            # Without a count to wait for, wait the timeout; once stats told us who is
            # there, stop waiting as soon as all of them answered.
            limit = found or None
            inspector = app.control.inspect(timeout=timeout, limit=limit, connection=conn)
            try:
                reply = getattr(inspector, method)()
            except Exception as exc:
                raise BrokerUnavailable(_describe(exc)) from exc
            if not reply and method == "stats":
                # Nobody is there: asking the others would only wait out more timeouts.
                unanswered.append(method)
                break
            if limit is None or len(reply or ()) < limit:
                # The wait ended by timeout. On Redis that leaves a BRPOP on the reply list in
                # flight, and the next broadcast on this connection then loses its replies
                # (measured: the call after a timed-out one came back empty about half the
                # time). A fresh connection does not inherit it.
                conn.release()
                conn = _connect(app, timeout)
            if not reply:
                unanswered.append(method)
                continue
            replies[method] = dict(reply)
            if method == "stats":
                found = len(reply)
    except BaseException:
        conn.release()
        raise
    return InspectReply(replies=replies, unanswered=tuple(unanswered)), conn


def _connect(app: Any, timeout: float) -> Any:
    conn = app.connection_for_read()
    try:
        conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:
        conn.release()
        raise BrokerUnavailable(_describe(exc)) from exc
    return conn


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:300]
