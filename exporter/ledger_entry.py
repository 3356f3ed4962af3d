"""One task id's memory inside the ledger: a compact slotted `Entry` and its merge rules.

The ledger may hold hundreds of thousands of these, so states seen are bit masks (one bit per
state, one bit per retry number) instead of sets, and the API's `TaskRecord` is built only
when someone reads it.
"""

from __future__ import annotations

from exporter.taskstate import (
    FAILURE,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    SENT,
    SOURCE_EVENTS,
    SOURCE_INSPECT,
    SOURCE_PUBSUB,
    SOURCE_RECONCILE,
    STARTED,
    SUCCESS,
    TaskRecord,
    TaskUpdate,
)

BIT = {SENT: 1, RECEIVED: 2, STARTED: 4, SUCCESS: 8, FAILURE: 16, REVOKED: 32, REJECTED: 64}
READY_MASK = 8 | 16 | 32 | 64
RETRY_BIT = 1  # retry number r is bit r of Entry.retry_seen
STATE_OF_BIT = {v: k for k, v in BIT.items()}
# Later states win over earlier ones when updates arrive out of order.
RANK = {SENT: 0, RECEIVED: 1, STARTED: 2, RETRY: 3, REJECTED: 4, REVOKED: 4, FAILURE: 4,
        SUCCESS: 4}  # fmt: skip
MAX_TEXT = 2000  # exception text kept per task, so a multi-megabyte message cannot pile up

_SOURCES = [SOURCE_EVENTS, SOURCE_PUBSUB, SOURCE_RECONCILE, SOURCE_INSPECT]


def source_bit(source: str) -> int:
    try:
        return 1 << _SOURCES.index(source)
    except ValueError:
        if len(_SOURCES) < 16:
            _SOURCES.append(source)
            return 1 << (len(_SOURCES) - 1)
        return 0


class Entry:
    __slots__ = ("args", "args_complete", "eta", "exc_msg", "exc_type", "finished_at", "kwargs",
                 "name", "parent_id", "queue", "received_at", "retries", "retries_known",
                 "retry_seen", "runtime", "runtime_done", "seen", "sent_at", "settled",
                 "sources", "started_at", "started_local", "state", "updated_at", "wait_done",
                 "worker")  # fmt: skip

    def __init__(self, state: str) -> None:
        self.state = state
        self.name: str | None = None
        self.queue: str | None = None
        self.worker: str | None = None
        self.sent_at: float | None = None
        self.received_at: float | None = None
        self.started_at: float | None = None
        self.started_local: float | None = None  # exporter clock, when STARTED was heard
        self.finished_at: float | None = None
        self.updated_at: float | None = None
        self.eta: float | None = None
        self.runtime: float | None = None
        self.retries = 0
        self.retries_known = False
        self.exc_type: str | None = None
        self.exc_msg: str | None = None
        self.args: object = None
        self.kwargs: object = None
        self.args_complete = False
        self.parent_id: str | None = None
        self.sources = 0
        self.seen = 0
        self.retry_seen = 0
        self.settled: float | None = None
        self.runtime_done = False
        self.wait_done = False

    def merge(self, u: TaskUpdate, now: float, sbit: int) -> None:
        ts = u.timestamp if u.timestamp is not None else now
        state = u.state
        if RANK.get(state, 0) >= RANK.get(self.state, 0):
            self.state = state
            self.updated_at = ts
        if u.name is not None:
            self.name = u.name
        if u.queue is not None:
            self.queue = u.queue
        if u.worker is not None:
            self.worker = u.worker
        if u.parent_id is not None:
            self.parent_id = u.parent_id
        if u.exception_type is not None:
            self.exc_type = u.exception_type
        if u.exception_message is not None:
            self.exc_msg = u.exception_message[:MAX_TEXT]
        if u.eta is not None:
            self.eta = u.eta
        if u.args_complete or (u.args is not None and not self.args_complete):
            self.args, self.kwargs, self.args_complete = u.args, u.kwargs, u.args_complete
        if u.retries is not None:
            if state in (RECEIVED, STARTED) or u.retries > self.retries:
                self.retries = u.retries
            self.retries_known = self.retries_known or state in (RECEIVED, STARTED)
        if u.runtime is not None:
            self.runtime = u.runtime
        if state == SENT:
            self.sent_at = self.sent_at or ts
        elif state == RECEIVED:
            self.received_at = self.received_at or ts
        elif state == STARTED:
            self.started_at = ts
            self.started_local = now
        elif state in (SUCCESS, FAILURE, REVOKED, REJECTED):
            self.finished_at = ts
        self.sources |= sbit


def record_of(task_id: str, e: Entry) -> TaskRecord:
    """The API's view of an entry (a fresh object; the caller may keep it)."""
    sources = {s for i, s in enumerate(_SOURCES) if e.sources & (1 << i)}
    return TaskRecord(
        task_id=task_id,
        state=e.state,
        name=e.name,
        queue=e.queue,
        worker=e.worker,
        sent_at=e.sent_at,
        received_at=e.received_at,
        started_at=e.started_at,
        finished_at=e.finished_at,
        updated_at=e.updated_at,
        runtime=e.runtime,
        retries=e.retries,
        exception_type=e.exc_type,
        exception_message=e.exc_msg,
        args=e.args,
        kwargs=e.kwargs,
        args_complete=e.args_complete,
        parent_id=e.parent_id,
        sources=sources,
    )
