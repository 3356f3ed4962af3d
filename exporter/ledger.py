"""The task ledger: one place where every source's `TaskUpdate` becomes counts and records.

It owns de-duplication (a state of a task id counts once, whichever source reported it),
the counters behind `celery_task_*_total`, the success-ratio window, and the bounded
recent-task lists the API reads. All state sits behind one lock; readers get copies.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

from exporter.clock import Clock, SystemClock
from exporter.taskstate import (
    COUNTER_FOR_STATE,
    FAILURE,
    READY_STATES,
    RETRY,
    SENT,
    STARTED,
    SUCCESS,
    TaskRecord,
    TaskUpdate,
)

UNKNOWN = "unknown"
OTHER = "other"

# Later states win over earlier ones when updates arrive out of order.
_RANK = {
    SENT: 0,
    "RECEIVED": 1,
    STARTED: 2,
    RETRY: 3,
    "REJECTED": 4,
    "REVOKED": 4,
    FAILURE: 4,
    SUCCESS: 4,
}


@dataclass(frozen=True)
class LedgerCounts:
    """A copy of the counters, for the collectors."""

    # (name, queue, counter) -> total, counter in COUNTER_FOR_STATE's values
    tasks: dict[tuple[str, str, str], int]
    # (name, exception type) -> failures
    exceptions: dict[tuple[str, str], int]
    entries: int
    evictions: int
    overflowed_names: int


class Ledger:
    def __init__(
        self,
        clock: Clock | None = None,
        max_tasks: int = 200_000,
        max_task_names: int = 500,
        max_exception_types: int = 100,
        recent_size: int = 1000,
        recent_failed_size: int = 1000,
        success_window: float = 300.0,
    ) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._max_tasks = max_tasks
        self._max_names = max_task_names
        self._max_exc = max_exception_types
        self._window = success_window
        self._records: OrderedDict[str, TaskRecord] = OrderedDict()
        self._seen: dict[str, set[str]] = {}
        self._tasks: dict[tuple[str, str, str], int] = defaultdict(int)
        self._exceptions: dict[tuple[str, str], int] = defaultdict(int)
        self._names: set[str] = set()
        self._exc_types: set[str] = set()
        self._evictions = 0
        self._overflowed = 0
        self._recent: deque[str] = deque(maxlen=recent_size)
        self._recent_failed: deque[str] = deque(maxlen=recent_failed_size)
        # (second, name) -> [succeeded, failed]; pruned to the window on each write
        self._outcomes: OrderedDict[tuple[int, str], list[int]] = OrderedDict()

    # -- writing -------------------------------------------------------------------------
    def apply(self, update: TaskUpdate) -> bool:
        """Fold one update in. Returns True when it counted (not a duplicate)."""
        with self._lock:
            return self._apply(update)

    def apply_many(self, updates: Iterable[TaskUpdate]) -> int:
        with self._lock:
            return sum(self._apply(u) for u in updates)

    def _apply(self, u: TaskUpdate) -> bool:
        now = self._clock.time()
        rec = self._records.get(u.task_id)
        if rec is None:
            rec = TaskRecord(task_id=u.task_id, state=u.state)
            self._records[u.task_id] = rec
            self._seen[u.task_id] = set()
            self._evict()
        else:
            self._records.move_to_end(u.task_id)
        _merge(rec, u, now)
        key = f"{u.state}:{u.retries}" if u.state == RETRY else u.state
        seen = self._seen[u.task_id]
        if key in seen:
            return False
        seen.add(key)
        counter = COUNTER_FOR_STATE.get(u.state)
        if counter is None:
            return True
        name = self._label_name(rec.name)
        queue = rec.queue or UNKNOWN
        self._tasks[(name, queue, counter)] += 1
        if u.state in (SUCCESS, FAILURE):
            self._outcome(now, name, u.state == SUCCESS)
        if u.state == FAILURE:
            exc = rec.exception_type or UNKNOWN
            if exc not in self._exc_types:
                if len(self._exc_types) >= self._max_exc:
                    exc = OTHER
                else:
                    self._exc_types.add(exc)
            self._exceptions[(name, exc)] += 1
        if u.state in READY_STATES or u.state == RETRY:
            self._recent.append(u.task_id)
            if u.state == FAILURE:
                self._recent_failed.append(u.task_id)
        return True

    def _label_name(self, name: str | None) -> str:
        if not name:
            return UNKNOWN
        if name in self._names:
            return name
        if len(self._names) >= self._max_names:
            self._overflowed += 1
            return OTHER
        self._names.add(name)
        return name

    def _outcome(self, now: float, name: str, ok: bool) -> None:
        slot = self._outcomes.setdefault((int(now), name), [0, 0])
        slot[0 if ok else 1] += 1
        horizon = now - self._window
        while self._outcomes:
            (second, _), _v = next(iter(self._outcomes.items()))
            if second >= horizon:
                break
            self._outcomes.popitem(last=False)

    def _evict(self) -> None:
        while len(self._records) > self._max_tasks:
            task_id, _ = self._records.popitem(last=False)
            self._seen.pop(task_id, None)
            self._evictions += 1

    # -- reading ---------------------------------------------------------------------------
    def counts(self) -> LedgerCounts:
        with self._lock:
            return LedgerCounts(
                tasks=dict(self._tasks),
                exceptions=dict(self._exceptions),
                entries=len(self._records),
                evictions=self._evictions,
                overflowed_names=self._overflowed,
            )

    def success_ratio(self, window: float | None = None) -> dict[str, tuple[int, int]]:
        """name -> (succeeded, failed) within the window ending now; "" is all names."""
        horizon = self._clock.time() - (window or self._window)
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        with self._lock:
            for (second, name), (ok, bad) in self._outcomes.items():
                if second >= horizon:
                    for key in (name, ""):
                        out[key][0] += ok
                        out[key][1] += bad
        return {k: (v[0], v[1]) for k, v in out.items()}

    @property
    def window(self) -> float:
        return self._window

    def get(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            rec = self._records.get(task_id)
            return _copy(rec) if rec else None

    def sent_time(self, task_id: str) -> float | None:
        with self._lock:
            rec = self._records.get(task_id)
            return rec.sent_at if rec else None

    def recent(self, failed_only: bool = False) -> list[TaskRecord]:
        """Finished (or retried) tasks, newest first, each id once."""
        with self._lock:
            ids = list(self._recent_failed if failed_only else self._recent)
            if not failed_only:
                ids += [i for i in self._recent_failed if i not in set(ids)]
            out: list[TaskRecord] = []
            seen: set[str] = set()
            for task_id in reversed(ids):
                rec = self._records.get(task_id)
                if rec is not None and task_id not in seen:
                    seen.add(task_id)
                    out.append(_copy(rec))
        out.sort(key=lambda r: r.updated_at or 0.0, reverse=True)
        return out


def _merge(rec: TaskRecord, u: TaskUpdate, now: float) -> None:
    ts = u.timestamp if u.timestamp is not None else now
    if _RANK.get(u.state, 0) >= _RANK.get(rec.state, 0):
        rec.state = u.state
        rec.updated_at = ts
    for attr in ("name", "queue", "worker", "parent_id", "exception_type", "exception_message"):
        value = getattr(u, attr)
        if value is not None:
            setattr(rec, attr, value)
    if u.args_complete or (u.args is not None and not rec.args_complete):
        rec.args, rec.kwargs, rec.args_complete = u.args, u.kwargs, u.args_complete
    if u.retries is not None:
        rec.retries = max(rec.retries, u.retries)
    if u.runtime is not None:
        rec.runtime = u.runtime
    if u.state == SENT:
        rec.sent_at = rec.sent_at or ts
    elif u.state == "RECEIVED":
        rec.received_at = rec.received_at or ts
    elif u.state == STARTED:
        rec.started_at = ts
    elif u.state in READY_STATES:
        rec.finished_at = ts
    rec.sources.add(u.source)


def _copy(rec: TaskRecord) -> TaskRecord:
    return replace(rec, sources=set(rec.sources))
