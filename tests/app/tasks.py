"""A small Celery app for the tests, configured from the environment.

TEST_BROKER_URL / TEST_BACKEND_URL pick the broker and result backend; TEST_RESULT_EXTENDED=0
turns off result_extended; TEST_KEYPREFIX sets global_keyprefix on broker and backend.
"""

from __future__ import annotations

import os
import time

from celery import Celery
from celery.exceptions import Reject

broker = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
backend = os.environ.get("TEST_BACKEND_URL") or None

app = Celery("testapp", broker=broker, backend=backend)
_prefix = os.environ.get("TEST_KEYPREFIX", "")
_transport: dict[str, object] = {}
if _prefix:
    _transport["global_keyprefix"] = _prefix
app.conf.update(
    broker_transport_options=_transport,
    result_backend_transport_options=dict(_transport),
    result_extended=os.environ.get("TEST_RESULT_EXTENDED", "1") == "1",
    task_track_started=os.environ.get("TEST_TRACK_STARTED", "1") == "1",
    task_send_sent_event=os.environ.get("TEST_SENT_EVENT", "1") == "1",
    worker_send_task_events=os.environ.get("TEST_EVENTS", "1") == "1",
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=int(os.environ.get("TEST_PREFETCH", "4")),
    task_default_queue=os.environ.get("TEST_DEFAULT_QUEUE", "celery"),
)


class TransientError(ConnectionError):
    """Looks like a network blip: the conservative fix-it mode retries it."""


class PermanentError(ValueError):
    pass


@app.task(name="tests.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="tests.fail_transient")
def fail_transient(marker: str | None = None) -> None:
    # With a marker, fail only while the marker key is absent, so a replay can succeed.
    if marker is not None and os.path.exists(marker):
        return None
    raise TransientError("connection reset by peer")


@app.task(name="tests.fail_permanent")
def fail_permanent() -> None:
    raise PermanentError("bad input")


@app.task(name="tests.retry_once", bind=True, max_retries=3, default_retry_delay=0)
def retry_once(self, value: int) -> int:  # type: ignore[no-untyped-def]
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return value


@app.task(name="tests.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="tests.retry_then_fail", bind=True, max_retries=2, default_retry_delay=0)
def retry_then_fail(self, marker: str | None = None) -> str:  # type: ignore[no-untyped-def]
    # Retried by Celery twice, then fails with TransientError; with the marker file, succeeds.
    if marker is not None and os.path.exists(marker):
        return "healed"
    raise self.retry(exc=TransientError("connection reset by peer"), countdown=0)


@app.task(name="tests.reject", acks_late=True)
def reject() -> None:
    # Late ack, so the worker still holds the message and sends task-rejected (an early-acked
    # message cannot be rejected); Celery >= 5.6 records a FAILURE result for it too.
    raise Reject("refused", requeue=False)
