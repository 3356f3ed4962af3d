"""The demo playground's Celery app: a few tasks that succeed, fail, retry and hang, and the
load generator that sends them. Not part of the exporter's package (nor its wheel).

Configured from the environment so workers (`celery -A demo.app worker`)
and the load generator agree: DEMO_BROKER_URL (default redis://127.0.0.1:6379/0) and
DEMO_KEYPREFIX (kombu's global_keyprefix, so a shared Redis never mixes with other apps).
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

QUEUES = ("demo.default", "demo.slow", "demo.backlog")  # demo.backlog has no consumer

BROKER = os.environ.get("DEMO_BROKER_URL", "redis://127.0.0.1:6379/0")
_prefix = os.environ.get("DEMO_KEYPREFIX", "")
_transport: dict[str, Any] = {"global_keyprefix": _prefix} if _prefix else {}

app = Celery("demo", broker=BROKER, backend=BROKER)
app.conf.update(
    broker_transport_options=_transport,
    result_backend_transport_options=dict(_transport),
    result_extended=True,
    task_track_started=True,
    task_send_sent_event=True,
    worker_send_task_events=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="demo.default",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
    result_expires=3600,
)


def _beat_schedule() -> dict[str, Any]:
    """The demo beat's entries, from the schedule file the demo also hands the exporter
    (DEMO_BEAT_FILE: {"entries": [{"name", "task", "every"}]}), so both read one list."""
    path = os.environ.get("DEMO_BEAT_FILE")
    if not path:
        return {}
    import json

    with open(path, encoding="utf-8") as fh:
        entries = json.load(fh)["entries"]
    return {e["name"]: {"task": e["task"], "schedule": float(e["every"])} for e in entries}


app.conf.beat_schedule = _beat_schedule()


class TransientError(ConnectionError):
    """A network-blip-like failure (the fix-it API treats it as retryable)."""


class PermanentError(ValueError):
    """Bad input: retrying will not help."""


@app.task(name="demo.ok")
def ok(x: int, y: int) -> int:
    time.sleep(random.uniform(0.01, 0.2))  # a little runtime, so percentiles have a shape
    return x + y


@app.task(name="demo.transient")
def transient() -> None:
    raise TransientError("connection reset by peer")


@app.task(name="demo.permanent")
def permanent(order_id: int) -> None:
    raise PermanentError(f"order {order_id} has no customer")


@app.task(name="demo.retry", bind=True, max_retries=2, default_retry_delay=1)
def retry(self: Any, value: int) -> int:
    # Retries once, then succeeds: a retry is not a failure.
    if self.request.retries == 0:
        raise self.retry(countdown=1)
    return value


@app.task(name="demo.slow")
def slow(seconds: float) -> float:
    time.sleep(seconds)  # the "stuck" task: runs past the exporter's --stuck-after
    return seconds


@app.task(name="demo.heartbeat")
def heartbeat() -> str:
    return "alive"  # the demo beat's healthy periodic task


@app.task(name="demo.export")
def export() -> None:
    # The demo beat's broken periodic task: sent on time, fails every run.
    raise PermanentError("export target s3://demo-bucket is not configured")


@app.task(name="demo.report")
def report() -> str:
    return "done"  # sent to demo.backlog, which no worker consumes: the queue grows


@dataclass
class LoadGenerator:
    """Sends a steady mix every `tick` seconds from a background thread; counts what it sent."""

    tick: float = 1.0
    slow_seconds: float = 120.0
    failure_burst: bool = False
    sent: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _send(self, task: Any, *args: Any, queue: str | None = None) -> None:
        task.apply_async(args=args, queue=queue)
        self.sent[task.name] = self.sent.get(task.name, 0) + 1

    def step(self, n: int) -> None:
        # Per 30 ticks: 120 ok, 15 retried-then-ok, 3 transient and 2 permanent failures
        # (about 3.5% failing), 15 messages to the unconsumed queue, one task that hangs.
        for i in range(4):
            self._send(ok, n, i)
        if n % 2 == 0:
            self._send(retry, n)
        if n % 10 == 3:
            self._send(transient)
        if n % 15 == 7:
            self._send(permanent, n)
        if n % 2 == 1:
            self._send(report, queue="demo.backlog")
        if n % 30 == 1:
            self._send(slow, self.slow_seconds, queue="demo.slow")
        if self.failure_burst:
            for _ in range(4):
                self._send(permanent, n)

    def run(self) -> None:
        n = 0
        while not self._stop.wait(self.tick if n else 0):
            self.step(n)
            n += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="demo-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
