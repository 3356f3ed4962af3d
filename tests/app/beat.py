"""Celery beat for the tests: the app of tests/app/tasks.py with RedBeat as its scheduler.

TEST_REDBEAT_URL is RedBeat's Redis, TEST_REDBEAT_PREFIX its key prefix. Two entries every
TEST_BEAT_EVERY seconds: "tick" (tests.add, succeeds) and "broken" (tests.fail_permanent).
beat_max_loop_interval is 1 s, so beat ticks, and extends its lock (5 x 1 s), every second.
TEST_BEAT_QUEUE, when set, is the queue option of "tick" (and priority 3).
RedBeat over Sentinel: TEST_REDBEAT_SENTINELS ("host:port") and TEST_REDBEAT_SERVICE (the
master's name), with a redis-sentinel:// TEST_REDBEAT_URL; over TLS: TEST_REDBEAT_SSL_CA, the
CA file for a rediss:// TEST_REDBEAT_URL.
"""

from __future__ import annotations

import os

from tests.app.tasks import app

every = float(os.environ.get("TEST_BEAT_EVERY", "2"))
queue = os.environ.get("TEST_BEAT_QUEUE")
tick_options = {"queue": queue, "priority": 3} if queue else {}
sentinels = os.environ.get("TEST_REDBEAT_SENTINELS")
if sentinels:
    host, port = sentinels.rsplit(":", 1)
    app.conf.redbeat_redis_options = {
        "sentinels": [(host, int(port))],
        "service_name": os.environ.get("TEST_REDBEAT_SERVICE", "master"),
        "socket_timeout": 5,
    }
ca = os.environ.get("TEST_REDBEAT_SSL_CA")
if ca:
    app.conf.redbeat_redis_use_ssl = {"ssl_cert_reqs": "required", "ssl_ca_certs": ca}
app.conf.update(
    beat_scheduler="redbeat.RedBeatScheduler",
    redbeat_redis_url=os.environ.get("TEST_REDBEAT_URL", app.conf.broker_url),
    redbeat_key_prefix=os.environ.get("TEST_REDBEAT_PREFIX", "redbeat:"),
    beat_max_loop_interval=1,
    beat_schedule={
        "tick": {"task": "tests.add", "schedule": every, "args": (1, 2), "options": tick_options},
        "broken": {"task": "tests.fail_permanent", "schedule": every},
    },
)
