"""Where Celery's mailbox lives on a Redis broker, as kombu's Redis channel would use it.

`pidbox_settings(app)` computes `PidboxSettings` (plain data) from the app's configuration
and kombu's own Redis channel class: the control exchange's PUBLISH channel, the reply
exchange and its binding table, kombu >= 5.7's binding deadline script and sets, the
priority steps and separator of the reply lists, the `unacked` hash. It returns None and why
when kombu's own Mailbox must be used instead. `redis_pidbox.PidboxBroadcaster` uses it.
"""

from __future__ import annotations

from bisect import bisect
from dataclasses import dataclass
from typing import Any

from exporter.celery_io.redis_events import RedisEventSettings

JSON = "application/json"


@dataclass(frozen=True)
class PidboxSettings:
    """Where the mailbox lives on this broker: plain data computed from the app's config."""

    server: RedisEventSettings  # the broker connection (its pattern is not used here)
    keyprefix: str  # global_keyprefix, in front of every key and channel
    topic: str  # the control exchange's PUBLISH channel, prefixed
    exchange: str  # celery.pidbox
    reply_exchange: str  # reply.celery.pidbox
    binding_table: str  # `_kombu.binding.%s`, unprefixed: the prefix is added when sent
    permanent_table: str | None  # kombu >= 5.7's `_kombu.binding_permanent.%s`
    deadlines_key: str | None  # kombu >= 5.7's deadline set, prefixed (as kombu passes it)
    refresh_script: str | None  # kombu's REFRESH_BINDING, when the reply queue expires
    binding_ttl_ms: int | None  # ARGV[3] of that script
    sep: str = "\x06\x16"
    priority_steps: tuple[int, ...] = (0, 3, 6, 9)
    unacked_key: str = "unacked"

    def q_for_pri(self, queue: str, pri: int) -> str:
        """kombu's Channel._q_for_pri: the list holding priority `pri` of `queue`."""
        steps = self.priority_steps
        step = steps[bisect(steps, pri) - 1]
        return f"{queue}{self.sep}{step}" if step else queue

    def lists(self, queue: str) -> list[str]:
        """Every list of `queue`, once each, in kombu's order."""
        return list(dict.fromkeys(self.q_for_pri(queue, p) for p in self.priority_steps))


def pidbox_settings(app: Any) -> tuple[PidboxSettings | None, str]:
    """The mailbox layout for this app's broker, as kombu's Redis channel would use it, or
    None and why kombu's own path must be used (not Redis, or a configuration it covers)."""
    from kombu.transport import redis as kombu_redis

    from exporter.celery_io.events import fanout_prefix, lean_settings

    server, why = lean_settings(app)
    if server is None:
        return None, why
    accept = {c for c in app.conf.accept_content or ()} - {"pickle"}
    if not accept <= {"json", JSON}:
        return None, f"accept_content {sorted(accept)} (replies may not be JSON)"
    conn = app.connection_for_read()
    try:
        opts = dict(conn.transport_options or {})
        prefix = fanout_prefix(conn)
    finally:
        conn.release()
    if opts.get("body_encoding", "base64") != "base64":
        return None, "a body_encoding transport option"
    channel = kombu_redis.Channel
    keyprefix = str(opts.get("global_keyprefix", ""))
    exchange = str(app.conf.control_exchange)
    expires = app.conf.control_queue_expires
    script = getattr(kombu_redis, "REFRESH_BINDING", None)
    deadlines = getattr(channel, "keyprefix_binding_deadlines", None)
    ttl: int | None = None
    if expires and script is not None and deadlines is not None:
        # Channel._binding_ttl of a queue declared with x-expires = control_queue_expires
        expires_ms = int(expires * 1000)
        ttl = max(expires_ms * kombu_redis.BINDING_EXPIRES_FACTOR, kombu_redis.MIN_BINDING_TTL)
    else:
        script = None
    steps = opts.get("priority_steps") or channel.priority_steps
    settings = PidboxSettings(
        server=server,
        keyprefix=keyprefix,
        topic=keyprefix + prefix + f"{exchange}.pidbox",
        exchange=f"{exchange}.pidbox",
        reply_exchange=f"reply.{exchange}.pidbox",
        binding_table=channel.keyprefix_queue,
        permanent_table=getattr(channel, "keyprefix_binding_permanent", None),
        deadlines_key=keyprefix + deadlines if deadlines is not None else None,
        refresh_script=script,
        binding_ttl_ms=ttl,
        sep=str(opts.get("sep", channel.sep)),
        priority_steps=tuple(int(p) for p in steps),
        unacked_key=str(opts.get("unacked_key", channel.unacked_key)),
    )
    return settings, ""
