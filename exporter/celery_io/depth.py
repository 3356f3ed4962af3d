"""Queue depth read straight from the broker, per transport, without consuming anything.

Redis: a queue is a list per priority step (`queue`, `queue<sep>3`, ...), all summed; the next
message to be taken sits at the tail of each list (LINDEX -1). One pipeline does every queue.
Messages taken but not acknowledged live in the `unacked` hash and are reported on their own.
RabbitMQ: a passive declare per queue on a throw-away channel (a missing queue closes it).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from exporter.cluster import BrokerUnavailable, DepthReply, QueueDepth, QueueHead

log = logging.getLogger(__name__)


def redis_depths(conn: Any, queues: list[str]) -> DepthReply:
    channel = conn.default_channel
    client = channel.client  # honours global_keyprefix (kombu's PrefixedStrictRedis)
    keys: list[tuple[str, str]] = []
    for queue in queues:
        # set(): several priorities can map to one step; each list is counted once.
        for key in dict.fromkeys(channel._q_for_pri(queue, pri) for pri in channel.priority_steps):
            keys.append((queue, key))
    # kombu's prefixing client adds global_keyprefix to the commands kombu itself uses
    # (LLEN, HLEN, ...) but not to LINDEX, which it never sends: prefix that one ourselves.
    lindex_prefix = getattr(channel, "global_keyprefix", "") or ""
    with client.pipeline(transaction=False) as pipe:
        for _queue, key in keys:
            pipe.llen(key)
            pipe.lindex(lindex_prefix + key, -1)
        pipe.hlen(channel.unacked_key)
        results = pipe.execute()
    return depth_reply(queues, keys, results)


def depth_reply(queues: list[str], keys: list[tuple[str, str]], results: list[Any]) -> DepthReply:
    """The reply from one pipeline of LLEN and LINDEX -1 per (queue, list key), then HLEN of
    the unacked hash: kombu's path and the lean one (redis_pidbox) both send exactly that."""
    lengths: dict[str, int] = dict.fromkeys(queues, 0)
    heads: dict[str, list[QueueHead]] = {q: [] for q in queues}
    for i, (queue, _key) in enumerate(keys):
        length, raw_head = results[2 * i], results[2 * i + 1]
        lengths[queue] += int(length or 0)
        if raw_head is not None:
            heads[queue].append(parse_head(raw_head))
    return DepthReply(
        queues={q: QueueDepth(q, lengths[q], None, tuple(heads[q])) for q in queues},
        unacked=int(results[-1] or 0),
    )


def parse_head(raw: bytes | str) -> QueueHead:
    """Task id and delivery tag of a kombu Redis message envelope (always JSON, never pickle;
    the body inside it is left undecoded)."""
    try:
        envelope = json.loads(raw)
        headers = envelope.get("headers") or {}
        props = envelope.get("properties") or {}
        task_id = headers.get("id") or (props.get("correlation_id"))
        tag = props.get("delivery_tag")
        return QueueHead(str(task_id) if task_id else None, str(tag) if tag else None)
    except (ValueError, AttributeError, TypeError):
        return QueueHead(None, None)


def amqp_depths(conn: Any, queues: list[str]) -> DepthReply:
    out: dict[str, QueueDepth] = {}
    for queue in queues:
        channel = conn.channel()
        try:
            _name, count, consumers = channel.queue_declare(queue=queue, passive=True)
            out[queue] = QueueDepth(queue, int(count), int(consumers))
        except conn.channel_errors:
            # 404: nobody declared it, so nothing waits in it.
            out[queue] = QueueDepth(queue, 0, 0)
        finally:
            try:
                channel.close()
            except conn.connection_errors + conn.channel_errors:
                log.debug("closing a channel after a passive declare failed", exc_info=True)
    return DepthReply(queues=out, unacked=None)


def read_depths(
    app: Any, kind: str, queues: list[str], timeout: float, conn: Any = None
) -> DepthReply:
    """Queue depths over `conn` (kept open: the caller owns it), or a connection of its own."""
    if conn is None:
        with app.connection_for_read() as own:
            return _read_depths(own, kind, queues, timeout)
    return _read_depths(conn, kind, queues, timeout)


def _read_depths(conn: Any, kind: str, queues: list[str], timeout: float) -> DepthReply:
    try:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        if kind == "redis":
            return redis_depths(conn, queues)
        return amqp_depths(conn, queues)
    except conn.connection_errors as exc:
        raise BrokerUnavailable(f"{exc.__class__.__name__}: {exc}"[:300]) from exc
    except OSError as exc:
        raise BrokerUnavailable(f"{exc.__class__.__name__}: {exc}"[:300]) from exc
