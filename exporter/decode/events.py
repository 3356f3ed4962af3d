"""The events decoder: one Celery task event (a dict, as either consumer in celery_io/ hands
it over) into a `TaskUpdate`, or None for worker events and junk.

Every field is guarded: a success without `runtime` (or with a non-number), timestamps from
hosts whose clock is far off (replaced by the time the exporter received the event),
non-string names; text goes through `clean`'s rules, as the result decoder's does
(records.py). Never raises.
"""

from __future__ import annotations

from typing import Any

from exporter.decode import clean
from exporter.taskdata import (
    FAILURE,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    SENT,
    SOURCE_EVENTS,
    STARTED,
    SUCCESS,
    TRACEBACK_MAX,
    UPDATE_DEFAULTS,
    TaskUpdate,
    update_from,
)

STATE_OF_EVENT = {
    "task-sent": SENT,
    "task-received": RECEIVED,
    "task-started": STARTED,
    "task-succeeded": SUCCESS,
    "task-failed": FAILURE,
    "task-retried": RETRY,
    "task-revoked": REVOKED,
    "task-rejected": REJECTED,
}
MAX_SKEW = 86_400.0  # a timestamp further than this from the receive time is not believed

_num = clean.finite
_text = clean.label


# celery.exceptions.Reject's repr (no class name in it): a task that raised Reject without
# requeue fails with it, and its result's exc_type says "Reject".
REJECT_REPR = "reject requeue="


def exception_type(text: Any) -> str | None:
    """`"ValueError('x')"` (the repr an event carries) -> `"ValueError"`."""
    if not isinstance(text, str) or not text:
        return None
    if text.startswith(REJECT_REPR):  # so one task's class is the same from either source
        return "Reject"
    head = text[:300].split("(", 1)[0].strip()
    head = head.rsplit(".", 1)[-1]
    return clean.label(head, 200) if head.isidentifier() else None


def event_timestamp(event: dict[str, Any]) -> float | None:
    ts = clean.in_range(_num(event.get("timestamp")))
    received = clean.in_range(_num(event.get("local_received")))
    if ts is None:
        return received
    if received is not None and abs(ts - received) > MAX_SKEW:
        return received
    return ts


def parse_event(event: dict[str, Any]) -> TaskUpdate | None:
    """The ledger update a task-* event means; None for worker events and junk."""
    get = event.get
    kind = get("type")
    state = STATE_OF_EVENT.get(kind) if isinstance(kind, str) else None
    task_id = clean.label(get("uuid"), 256)
    if state is None or task_id is None or len(task_id) > 255:
        return None
    # Built from a complete field dict: TaskUpdate's frozen __init__ was the hottest line of
    # the event path (taskdata.update_from). A field the event lacks keeps its default
    # without a call to its cleaner: most are absent from most events (a task-started
    # carries no name, queue, eta, ids, runtime or retries): 2.3 -> 1.9 us an event over a
    # received, a succeeded and two started events (timeit, bench/RESULTS.md).
    values = dict(UPDATE_DEFAULTS)
    values["task_id"] = task_id
    values["state"] = state
    values["source"] = SOURCE_EVENTS
    values["timestamp"] = event_timestamp(event)
    if state != SENT:  # task-sent's hostname is the producer's, not a worker's
        values["worker"] = _text(get("hostname"))
    v = get("name")
    if v is not None:
        values["name"] = _text(v)
    v, routing_key = get("queue"), get("routing_key")
    if v is not None or routing_key is not None:
        values["queue"] = _text(v) or _text(routing_key)
    v = get("runtime")
    if v is not None:
        v = _num(v)
        values["runtime"] = v if v is not None and v >= 0 else None
    v = get("retries")
    if v is not None and state in (RECEIVED, SENT):
        ok = v.__class__ is int and 0 <= v < 1_000_000  # (neither a bool nor an int subclass)
        values["retries"] = v if ok else None
    v = get("eta")
    if v is not None:
        values["eta"] = clean.epoch(v)
    if state in (FAILURE, RETRY):
        exc = get("exception")
        values["exception_type"] = exception_type(exc)
        values["exception_message"] = clean.text(exc, 2000)
        values["traceback"] = clean.text(get("traceback"), TRACEBACK_MAX)
    v = get("parent_id")
    if v is not None:
        values["parent_id"] = _text(v, 255)
    v = get("root_id")
    if v is not None:
        values["root_id"] = _text(v, 255)
    return update_from(values)
