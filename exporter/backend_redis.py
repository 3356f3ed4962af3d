"""The one place that builds Redis clients for the result backend (redis-py, no Celery).

Used by the result sources (pub/sub, reconcile), the keeper (saved ledger state), the
remediation backend read and the API's plan store; nothing else builds one.

Timeouts, retries and health checks are set explicitly: a source must notice a dead server
within seconds, and a pub/sub connection must be pinged so a half-open socket is detected.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from exporter.config import Config
from exporter.config_checks import url_scheme


def backend_client(config: Config, *, pubsub: bool = False, **overrides: Any) -> redis.Redis:
    """A client for the configured Redis result backend (redis, rediss, unix socket).

    Sentinel URLs are resolved to the current master with redis-py's Sentinel client.
    """
    url = config.backend_url
    if url is None:
        raise ValueError("no Redis result backend configured")
    opts: dict[str, Any] = {
        "socket_connect_timeout": 5.0,
        # A pub/sub listener blocks in get_message(timeout=...) instead of on the socket.
        "socket_timeout": None if pubsub else 10.0,
        "health_check_interval": 15 if pubsub else 0,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.1), 2),
        "retry_on_timeout": True,
        "decode_responses": False,
    }
    opts.update(overrides)
    scheme = url_scheme(url)
    if scheme == "sentinel":
        return _sentinel_master(url, config, opts)
    if scheme in ("redis+socket", "socket"):
        url = "unix://" + url.split("://", 1)[1]
    return redis.Redis.from_url(url, **opts)


def _sentinel_master(url: str, config: Config, opts: dict[str, Any]) -> redis.Redis:
    hosts = []
    db = 0
    password = None
    for part in url.split(";"):
        parsed = urlsplit(part.strip())
        hosts.append((parsed.hostname or "localhost", parsed.port or 26379))
        if parsed.path.strip("/").isdigit():
            db = int(parsed.path.strip("/"))
        password = password or parsed.password
    transport = config.backend_transport_options or config.broker_transport_options
    master = str(transport.get("master_name", "mymaster"))
    sentinel = Sentinel(hosts, sentinel_kwargs=transport.get("sentinel_kwargs") or {})
    return sentinel.master_for(master, db=db, password=password, **opts)
