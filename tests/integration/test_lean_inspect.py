"""The lean Redis inspect broadcast (celery_io/redis_pidbox.py) against kombu's own Mailbox.

A real prefork worker answers both; what the poller reads (after exporter/decode/inspect.py)
must be the same, the request on the wire must be kombu's byte for byte (but for its ids and
times), and nothing may be left on the broker after a poll. With and without
`global_keyprefix`.
"""

from __future__ import annotations

import json
import threading
from base64 import b64decode
from collections.abc import Callable
from typing import Any

import pytest
import redis

from exporter.celery_io import CeleryIO, CeleryReader
from exporter.celery_io.pidbox_layout import pidbox_settings
from exporter.celery_io.redis_pidbox import PidboxBroadcaster
from exporter.config import Config
from exporter.decode.inspect import clean_reply
from tests.support.common import wait_for
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker, celery_app

pytestmark = pytest.mark.integration

PREFIXES = ["", "app1:"]


def _config(url: str, prefix: str) -> Config:
    opts = {"global_keyprefix": prefix} if prefix else {}
    return Config(broker_url=url, broker_transport_options=opts, inspect_timeout=1.0)


def _readers(url: str, prefix: str) -> tuple[CeleryReader, CeleryReader]:
    config = _config(url, prefix)
    lean, kombu = CeleryReader(CeleryIO(config)), CeleryReader(CeleryIO(config), lean=False)
    lean._broadcaster()  # picks the path
    assert lean.path == "lean Redis pidbox" and kombu.path == ""
    return lean, kombu


@pytest.mark.parametrize("prefix", PREFIXES)
def test_lean_broadcast_decodes_like_kombus(
    private_redis: RedisServer, start_worker: Callable[..., Worker], prefix: str
) -> None:
    url = f"{private_redis.url}/3"
    env = {"TEST_BROKER_URL": url, "TEST_KEYPREFIX": prefix}
    worker = start_worker(env, concurrency=1)
    app = celery_app(env)
    # One task running, one waiting behind it, one scheduled: every list has an entry.
    running = app.send_task("tests.sleep", (30,))
    app.send_task("tests.sleep", (1,))
    app.send_task("tests.add", (1, 2), countdown=600)
    lean, kombu = _readers(url, prefix)

    def both() -> tuple[Any, Any]:
        return clean_reply(lean.inspect(1.0, None)), clean_reply(kombu.inspect(1.0, None))

    def settled() -> tuple[Any, Any] | None:
        (a, da), (b, db) = both()
        active = (a.get("active") or {}).get(worker.name) or []
        if [t["id"] for t in active] != [running.id] or not (a.get("scheduled") or {}).get(
            worker.name
        ):
            return None
        # The worker lists a task as active before its stats count it: wait for the count,
        # or the kombu reply read after this one may hold one more (seen once in CI).
        stats = (a.get("stats") or {}).get(worker.name) or {}
        if not (stats.get("total") or {}).get("tests.sleep"):
            return None
        return (a, da), (b, db)

    (ours, dropped_ours), (theirs, dropped_theirs) = wait_for(settled, 60, what="busy worker")
    assert ours == theirs
    assert dropped_ours == dropped_theirs == 0
    assert set(ours.replies) == {"stats", "active_queues", "active", "reserved", "scheduled"}
    assert ours.unanswered == ()
    # With the worker count known, the lean path answers without waiting out the timeout.
    bounded = clean_reply(lean.inspect(5.0, 1))[0]
    assert bounded.replies["stats"].keys() == {worker.name}
    depths_ours, depths_theirs = lean.depths(["celery"]), kombu.depths(["celery"])
    assert depths_ours == depths_theirs
    assert depths_ours.queues["celery"].length is not None
    # Nothing is left behind: no binding member, no reply list (the deadline set stays,
    # as kombu leaves it).
    client = redis.Redis.from_url(url)
    table = f"{prefix}_kombu.binding.reply.celery.pidbox"
    assert client.smembers(table) == set()
    assert not [k for k in client.keys("*") if b".reply.celery.pidbox" in k]
    lean.close()
    kombu.close()


@pytest.mark.parametrize("prefix", PREFIXES)
def test_request_is_kombus_envelope(private_redis: RedisServer, prefix: str) -> None:
    """What workers receive: kombu's envelope, channel and body, field for field."""
    url = f"{private_redis.url}/2"
    config = _config(url, prefix)
    app = CeleryIO(config).app
    settings, why = pidbox_settings(app)
    assert settings is not None, why
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub()
    pubsub.psubscribe("*pidbox*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"  # type: ignore[index]
    captured: list[tuple[str, dict[str, Any]]] = []

    def take() -> None:
        while len(captured) < 10:
            msg = pubsub.get_message(timeout=10)
            if msg is None:
                return
            if msg["type"] == "pmessage":
                captured.append((msg["channel"].decode(), json.loads(msg["data"])))

    reader = threading.Thread(target=take)
    reader.start()
    for method in ("stats", "active_queues", "active", "reserved", "scheduled"):
        getattr(app.control.inspect(timeout=0.05), method)()
    ours = PidboxBroadcaster(settings)
    ours._collect = lambda *a, **k: {m: {"w@h": {}} for m in a[2]}  # type: ignore[method-assign]
    ours.inspect(0.05, 1)
    ours.close()
    reader.join(20)
    assert len(captured) == 10
    kombus, leans = captured[:5], captured[5:]
    for (channel_k, env_k), (channel_l, env_l) in zip(kombus, leans, strict=True):
        assert channel_k == channel_l == f"{prefix}/2.celery.pidbox"
        assert _shape(env_k) == _shape(env_l)


def _shape(envelope: dict[str, Any]) -> Any:
    """The envelope with its per-message ids and times blanked, keys in their order."""
    body = json.loads(b64decode(envelope["body"]))
    body["ticket"] = "T"
    body["reply_to"]["routing_key"] = "R"
    out = dict(envelope, body=list(body.items()))
    out["headers"] = {k: type(v).__name__ for k, v in envelope["headers"].items()}
    out["properties"] = dict(envelope["properties"], delivery_tag="D")
    return json.dumps(out)


def test_other_content_types_take_kombus_path(private_redis: RedisServer) -> None:
    url = f"{private_redis.url}/4"
    config = Config(broker_url=url, accept_content=("json", "msgpack"))
    settings, why = pidbox_settings(CeleryIO(config).app)
    assert settings is None and "accept_content" in why


def test_restart_between_polls_reconnects(
    private_redis: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    url = f"{private_redis.url}/0"
    worker = start_worker({"TEST_BROKER_URL": url})
    lean, _ = _readers(url, "")
    assert worker.name in (lean.inspect(1.0, None).get("stats") or {})
    held = lean._lean._conn
    private_redis.stop()
    private_redis.start()  # same port; the worker reconnects by itself

    def answered() -> bool:
        return worker.name in (lean.inspect(1.0, None).get("stats") or {})

    wait_for(answered, 60, what="answer after a broker restart")
    assert lean._lean._conn is not held
    lean.close()
