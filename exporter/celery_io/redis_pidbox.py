"""Inspect broadcasts on a Redis broker without kombu: the pidbox wire format, written directly.

On Redis, Celery's control exchange (`celery.pidbox`, a fanout) is carried over PUBLISH to
`<global_keyprefix><fanout prefix>celery.pidbox`, where every worker's mailbox is subscribed.
A broadcast that wants replies names a reply queue: kombu binds it to the direct exchange
`reply.celery.pidbox` in the table `_kombu.binding.reply.celery.pidbox` (member
`<routing key>\\x06\\x16\\x06\\x16<queue>`), and each worker LPUSHes its reply envelope,
`{"<node>": <reply>}` with the broadcast's `ticket` in its headers, onto that queue's list.
`PidboxBroadcaster` writes exactly what kombu's `Mailbox._broadcast` writes (the same
envelope, the same binding with the same deadline script, checked byte for byte against
kombu's own messages in tests/integration/test_lean_inspect.py) and reads the replies with
BRPOP, but on one plain redis-py connection kept from poll to poll, with one reply queue per
poll (replies are told apart by ticket) and the four broadcasts after `stats` published in
one write: about a dozen round trips per poll where kombu's path made some thirty, each
through a new client object.

The queue depths are read on the same connection (LLEN and LINDEX of each priority list,
HLEN of `unacked`, one pipeline). Replies are decoded here only as far as the envelope (JSON
only, never pickle); what the workers said is decoded by exporter/decode/inspect.py.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from base64 import b64encode
from binascii import a2b_base64
from dataclasses import replace
from typing import Any

import orjson
import redis

from exporter.celery_io.depth import depth_reply
from exporter.celery_io.pidbox_layout import JSON, PidboxSettings
from exporter.celery_io.redis_events import connect
from exporter.cluster import BrokerUnavailable, DepthReply, InspectReply

log = logging.getLogger(__name__)

# The arguments Celery's `Inspect` sends for each method the poller asks.
METHOD_ARGUMENTS: dict[str, dict[str, Any]] = {
    "stats": {},
    "active_queues": {},
    "active": {"safe": None},
    "reserved": {},
    "scheduled": {},
}


def _envelope(body: dict[str, Any], headers: dict[str, Any], exchange: str) -> bytes:
    """A message as kombu's virtual channel publishes it (Producer.publish + basic_publish)."""
    message = {
        "body": b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": JSON,
        "headers": headers,
        "properties": {
            "delivery_mode": 2,
            "delivery_info": {"exchange": exchange, "routing_key": ""},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(message).encode()


def reply_of(data: bytes) -> tuple[str, dict[Any, Any]] | None:
    """(ticket, {node: reply}) of one reply envelope; None for anything else (never raises)."""
    try:
        envelope = orjson.loads(data)
        if envelope.get("content-type") != JSON:
            return None  # pickle above all: never decoded
        encoding = envelope.get("content-encoding")
        headers = envelope.get("headers") or {}
        if (encoding is not None and encoding.lower() not in ("utf-8", "utf8")) or (
            "compression" in headers
        ):
            return None
        body = envelope["body"]
        body_encoding = (envelope.get("properties") or {}).get("body_encoding")
        if body_encoding == "base64":
            body = a2b_base64(body)
        elif body_encoding is not None:
            return None
        payload = orjson.loads(body)
        ticket = headers.get("ticket")
        if type(payload) is not dict or type(ticket) is not str:
            return None
        return ticket, payload
    except Exception:  # whatever a hostile reply holds: it is not a reply
        return None


class PidboxBroadcaster:
    """The poller's inspect broadcasts and queue depths over one held redis-py connection."""

    def __init__(self, settings: PidboxSettings) -> None:
        self.settings = settings
        self._conn: Any = None
        self._close: Any = None
        # The `clock` header: a Lamport clock moved forward per request, as kombu's Mailbox
        # does (workers only take the larger of theirs and ours).
        self._clock = 0
        self._float_timeouts = True  # BRPOP takes decimals from Redis 6.0

    # -- connection --------------------------------------------------------------------------
    def _connection(self, timeout: float) -> Any:
        if self._conn is None:
            server = replace(self.settings.server, read_timeout=timeout + 10.0)
            try:
                self._conn, self._close = connect(server)
            except (redis.RedisError, OSError) as exc:
                raise BrokerUnavailable(_describe(exc)) from exc
        return self._conn

    def close(self) -> None:
        close, self._conn, self._close = self._close, None, None
        if close is not None:
            try:
                close()
            except Exception:  # closing a dead socket: nothing to report
                log.debug("closing the pidbox connection failed", exc_info=True)

    def _run(self, timeout: float, work: Any) -> Any:
        """`work(conn)` on the held connection; once more on a fresh one if that fails (it may
        be stale since the last poll); then BrokerUnavailable."""
        fresh = self._conn is None
        for attempt in (0, 1):
            conn = self._connection(timeout)
            try:
                return work(conn)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self.close()
                if fresh or attempt:
                    raise BrokerUnavailable(_describe(exc)) from exc
                fresh = True
            except redis.RedisError as exc:  # an error reply: read-only replica, OOM, ...
                self.close()
                raise BrokerUnavailable(_describe(exc)) from exc
        raise AssertionError("unreachable")

    # -- inspect -----------------------------------------------------------------------------
    def inspect(self, timeout: float, expected: int | None = None) -> InspectReply:
        return self._run(timeout, lambda conn: self._inspect(conn, timeout, expected))

    def _inspect(self, conn: Any, timeout: float, expected: int | None) -> InspectReply:
        s = self.settings
        oid = str(uuid.uuid4())
        queue = f"{oid}.{s.reply_exchange}"
        member = s.sep.join([oid, "", queue])
        keys = [s.keyprefix + k for k in s.lists(queue)]
        replies: dict[str, dict[str, Any]] = {}
        unanswered: list[str] = []
        first, rest = "stats", [m for m in METHOD_ARGUMENTS if m != "stats"]
        try:
            tickets = {first: str(uuid.uuid4())}
            request = self._publish(first, tickets[first], oid, timeout)
            self._send(conn, [*self._bind(member), request])
            got = self._collect(conn, keys, tickets, timeout, expected)
            if not got[first]:
                return InspectReply(replies={}, unanswered=(first,))
            replies[first] = got[first]
            found = len(got[first])
            tickets = {m: str(uuid.uuid4()) for m in rest}
            self._send(conn, [self._publish(m, tickets[m], oid, timeout) for m in rest])
            got = self._collect(conn, keys, tickets, timeout, found)
            for method in rest:
                if got[method]:
                    replies[method] = got[method]
                else:
                    unanswered.append(method)
        finally:
            self._unbind(conn, member, keys)
        return InspectReply(replies=replies, unanswered=tuple(unanswered))

    def _bind(self, member: str) -> list[tuple[Any, ...]]:
        """What kombu's Channel._queue_bind sends for the reply queue."""
        s = self.settings
        table = s.keyprefix + s.binding_table % s.reply_exchange
        if s.refresh_script is not None and s.deadlines_key is not None:
            return [
                (
                    "EVAL",
                    s.refresh_script,
                    2,
                    table,
                    s.deadlines_key,
                    member,
                    s.reply_exchange,
                    s.binding_ttl_ms,
                )
            ]
        out: list[tuple[Any, ...]] = [("SADD", table, member)]
        if s.permanent_table is not None:
            out.append(("SADD", s.keyprefix + s.permanent_table % s.reply_exchange, member))
        return out

    def _unbind(self, conn: Any, member: str, keys: list[str]) -> None:
        """kombu's after_reply_message_received: the binding and the reply lists go."""
        s = self.settings
        commands: list[tuple[Any, ...]] = [
            ("SREM", s.keyprefix + s.binding_table % s.reply_exchange, member)
        ]
        if s.permanent_table is not None:
            commands.append(("SREM", s.keyprefix + s.permanent_table % s.reply_exchange, member))
        commands.append(("DEL", *keys))
        try:
            self._send(conn, commands)
        except (redis.RedisError, OSError):
            log.debug("removing the reply queue failed", exc_info=True)
            self.close()

    def _publish(self, method: str, ticket: str, oid: str, timeout: float) -> tuple[Any, ...]:
        """What kombu's Mailbox._publish sends: the request on the control exchange."""
        s = self.settings
        self._clock += 1
        body = {
            "method": method,
            "arguments": METHOD_ARGUMENTS[method],
            "destination": None,
            "pattern": None,
            "matcher": None,
            "ticket": ticket,
            "reply_to": {"exchange": s.reply_exchange, "routing_key": oid},
        }
        # kombu stamps `expires` with the broadcast's timeout; 0 when there is none.
        headers = {"clock": self._clock, "expires": time.time() + timeout if timeout else 0}
        return ("PUBLISH", s.topic, _envelope(body, headers, s.exchange))

    def _send(self, conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Every reply of a pipeline; an error reply is raised once all were read."""
        conn.send_packed_command(conn.pack_commands(commands))
        out: list[Any] = []
        error: redis.ResponseError | None = None
        for _ in commands:
            try:
                out.append(conn.read_response())
            except redis.ResponseError as exc:
                error = error or exc
                out.append(None)
        if error is not None:
            raise error
        return out

    def _collect(
        self,
        conn: Any,
        keys: list[str],
        tickets: dict[str, str],
        timeout: float,
        limit: int | None,
    ) -> dict[str, dict[str, Any]]:
        """Replies per method until each has `limit` of them, or `timeout` passes without one
        (kombu's drain: each wait is the whole timeout)."""
        by_ticket = {t: m for m, t in tickets.items()}
        got: dict[str, dict[str, Any]] = {m: {} for m in tickets}
        counts = dict.fromkeys(tickets, 0)
        while limit is None or any(n < limit for n in counts.values()):
            item = self._brpop(conn, keys, timeout)
            if item is None:
                break
            decoded = reply_of(item)
            if decoded is None:
                continue
            ticket, payload = decoded
            method = by_ticket.get(ticket)
            if method is None:
                continue  # a late reply to an earlier broadcast of this poll
            got[method].update(payload)
            counts[method] += 1
        return got

    def _brpop(self, conn: Any, keys: list[str], timeout: float) -> bytes | None:
        wait: Any = round(timeout, 3) if self._float_timeouts else max(1, int(timeout + 0.999))
        conn.send_command("BRPOP", *keys, wait)
        try:
            reply = conn.read_response()
        except redis.ResponseError:
            if not self._float_timeouts:
                raise
            self._float_timeouts = False  # Redis < 6.0: whole seconds only
            return self._brpop(conn, keys, timeout)
        return None if reply is None else bytes(reply[1])

    # -- depths ------------------------------------------------------------------------------
    def depths(self, queues: list[str], timeout: float) -> DepthReply:
        return self._run(timeout, lambda conn: self._depths(conn, queues))

    def _depths(self, conn: Any, queues: list[str]) -> DepthReply:
        s = self.settings
        keys = [(q, s.keyprefix + key) for q in queues for key in s.lists(q)]
        commands: list[tuple[Any, ...]] = []
        for _queue, key in keys:
            commands.append(("LLEN", key))
            commands.append(("LINDEX", key, -1))
        commands.append(("HLEN", s.keyprefix + s.unacked_key))
        return depth_reply(queues, keys, self._send(conn, commands))


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:300]
