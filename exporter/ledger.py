"""The task ledger: one place where every source's `TaskUpdate` becomes counts and records.

It owns de-duplication (a state of a task id counts once, whichever source reported it; a
retry counts once per retry number), the counters behind `celery_task_*_total`, the runtime
and queue-wait histograms, the success-ratio window, running tasks, and the bounded
recent-task lists the API reads. All state sits behind one lock; readers get copies.

Exactness across restarts and evictions rests on one watermark `W` (see docs in the README's
sources section): every ready result whose settle time is <= W has been counted. A reconcile
that scanned the whole backend from time S raises W to S - RECONCILE_MARGIN; evicting a
settled entry raises W to its settle time. A reconcile-found result at or below W is therefore
a duplicate, and only entries above W (plus unfinished ones) need remembering or persisting.
Persistence itself (Redis) lives in `ledger_store.py`; this module only exports/imports dicts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from exporter.clock import Clock, SystemClock
from exporter.ledger_entry import BIT, READY_MASK, RETRY_BIT, Entry, record_of, source_bit
from exporter.ledger_parts import (
    OTHER,
    UNKNOWN,
    Histogram,
    LabelGuard,
    LedgerCounts,
    OutcomeWindow,
)
from exporter.taskstate import (
    COUNTER_FOR_STATE,
    FAILURE,
    RETRY,
    SOURCE_RECONCILE,
    STARTED,
    SUCCESS,
    TaskRecord,
    TaskUpdate,
)

__all__ = ["OTHER", "UNKNOWN", "Ledger", "LedgerCounts"]

# Worker clocks may lag the exporter's; a result dated up to this long before a reconcile
# started is still assumed to have been present when it scanned.
RECONCILE_MARGIN = 120.0


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
        buckets: tuple[float, ...] = (0.1, 1.0, 10.0, 60.0),
        wait_buckets: tuple[float, ...] = (0.1, 1.0, 10.0, 60.0),
        worker_label: bool = False,
        derive_runtime: bool = False,
    ) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._max_tasks = max_tasks
        self._window = success_window
        self._buckets = tuple(buckets)
        self._wait_buckets = tuple(wait_buckets)
        self._worker_label = worker_label
        # Without events there is no `runtime` field: derive it from pub/sub receive times.
        self._derive_runtime = derive_runtime
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._tasks: dict[tuple[str, str, str], int] = {}
        self._by_worker: dict[tuple[str, str, str, str], int] = {}
        self._exceptions: dict[tuple[str, str], int] = {}
        self._runtime: dict[tuple[str, str], Histogram] = {}
        self._wait: dict[tuple[str, str], Histogram] = {}
        self._guards = {
            "name": LabelGuard(max_task_names),
            "queue_name": LabelGuard(max_task_names),
            "exception": LabelGuard(max_exception_types),
            "hostname": LabelGuard(max_task_names),
        }
        self._evictions = 0
        self._below_watermark = 0
        self._watermark = 0.0
        self._running: dict[str, Entry] = {}
        self._recent: deque[str] = deque(maxlen=recent_size)
        self._recent_failed: deque[str] = deque(maxlen=recent_failed_size)
        self._outcomes = OutcomeWindow(success_window)
        # persistence bookkeeping: ids changed since the last export, ids held in the store
        self._dirty: set[str] = set()
        self._persisted: set[str] = set()
        self._persisted_watermark = 0.0

    @classmethod
    def from_config(cls, config: Any, clock: Clock | None = None) -> Ledger:
        return cls(
            clock=clock,
            max_tasks=config.ledger_max_tasks,
            max_task_names=config.max_task_names,
            max_exception_types=config.max_exception_types,
            recent_size=config.recent_size,
            recent_failed_size=config.recent_failed_size,
            success_window=config.success_window,
            buckets=config.buckets,
            wait_buckets=config.wait_buckets,
            worker_label=config.task_worker_label,
            derive_runtime=not config.events,
        )

    # -- writing -------------------------------------------------------------------------
    def apply(self, update: TaskUpdate) -> bool:
        """Fold one update in. Returns True when it counted (not a duplicate)."""
        with self._lock:
            return self._apply(update, self._clock.time())

    def apply_many(self, updates: Iterable[TaskUpdate]) -> int:
        with self._lock:
            now = self._clock.time()
            return sum(self._apply(u, now) for u in updates)

    def _apply(self, u: TaskUpdate, now: float) -> bool:
        task_id = u.task_id
        state = u.state
        bit = BIT.get(state, 0)
        # Reconcile dates a result by its date_done; live sources settle it when heard.
        backfill = u.source == SOURCE_RECONCILE
        settle = u.timestamp if backfill and u.timestamp else now
        e = self._entries.get(task_id)
        if e is None:
            # Only a backfill can be stale: a live message is news, however late it is.
            if backfill and bit & READY_MASK and settle <= self._watermark:
                self._below_watermark += 1
                return False
            e = Entry(state)
            self._entries[task_id] = e
            if len(self._entries) > self._max_tasks:
                self._evict()
        else:
            self._entries.move_to_end(task_id)
        e.merge(u, now, source_bit(u.source))
        self._dirty.add(task_id)
        counted = False
        if state == RETRY:
            number = u.retries
            if number is None:
                # Unnumbered (no result_extended): the attempt events told us, else the next.
                number = e.retries if e.retries_known else _lowest_unset(e.retry_seen)
            counted = self._count_retry(task_id, e, number)
        elif bit and not e.seen & bit:
            e.seen |= bit
            counted = True
            self._count(e, COUNTER_FOR_STATE[state])
            if bit & READY_MASK:
                e.settled = settle
                self._finish(task_id, e, state, now)
            elif state == STARTED and not e.seen & READY_MASK:
                self._running[task_id] = e
        if bit & READY_MASK and u.retries:
            # A final result with result_extended says how many retries came before it.
            for number in range(min(u.retries, 64)):
                counted |= self._count_retry(task_id, e, number)
        self._observe(e, u, state, now)
        return counted

    def _count_retry(self, task_id: str, e: Entry, number: int) -> bool:
        mask = RETRY_BIT << min(max(number, 0), 64)
        if e.retry_seen & mask:
            return False
        e.retry_seen |= mask
        self._count(e, "retried")
        self._recent.append(task_id)
        return True

    def _count(self, e: Entry, counter: str) -> None:
        name = self._guards["name"](e.name)
        queue = self._guards["queue_name"](e.queue)
        key = (name, queue, counter)
        self._tasks[key] = self._tasks.get(key, 0) + 1
        if self._worker_label:
            wkey = (name, queue, counter, self._guards["hostname"](e.worker))
            self._by_worker[wkey] = self._by_worker.get(wkey, 0) + 1

    def _finish(self, task_id: str, e: Entry, state: str, now: float) -> None:
        self._running.pop(task_id, None)
        name = self._guards["name"](e.name)
        if state == FAILURE:
            exc = self._guards["exception"](e.exc_type)
            key = (name, exc)
            self._exceptions[key] = self._exceptions.get(key, 0) + 1
            self._recent_failed.append(task_id)
        if state in (SUCCESS, FAILURE):
            self._outcomes.add(now, name, state == SUCCESS)
        self._recent.append(task_id)

    def _observe(self, e: Entry, u: TaskUpdate, state: str, now: float) -> None:
        """Histograms, each observed at most once per task, whenever its inputs are known."""
        if not e.runtime_done and e.seen & READY_MASK:
            runtime = u.runtime
            if runtime is None and self._derive_runtime and e.started_local is not None:
                runtime = now - e.started_local
            if runtime is not None and runtime >= 0:
                e.runtime_done = True
                self._hist(self._runtime, e, self._buckets).observe(runtime)
        if not e.wait_done and e.started_at is not None:
            base = e.sent_at
            if e.eta is not None and (base is None or e.eta > base):
                base = e.eta
            if base is not None:
                e.wait_done = True
                # Producer and worker clocks differ: a negative wait is skew, not speed.
                wait = max(0.0, e.started_at - base)
                self._hist(self._wait, e, self._wait_buckets).observe(wait)

    def _hist(self, table: dict[tuple[str, str], Histogram], e: Entry,
              bounds: tuple[float, ...]) -> Histogram:  # fmt: skip
        key = (self._guards["name"](e.name), self._guards["queue_name"](e.queue))
        hist = table.get(key)
        if hist is None:
            hist = table[key] = Histogram(bounds)
        return hist

    def _evict(self) -> None:
        while len(self._entries) > self._max_tasks:
            task_id, e = self._entries.popitem(last=False)
            self._running.pop(task_id, None)
            self._evictions += 1
            # Forgetting a counted result is safe only if reconcile will not count it again.
            if e.settled is not None and e.settled > self._watermark:
                self._watermark = e.settled
            self._dirty.add(task_id)

    def observe_running(self, tasks: Iterable[tuple[str, str, str | None, str, float | None]],
                        ) -> None:  # fmt: skip
        """Learn (task id, name, queue, worker, started_at) from inspect, without counting."""
        with self._lock:
            for task_id, name, queue, worker, started_at in tasks:
                e = self._entries.get(task_id)
                if e is None or e.seen & READY_MASK:
                    continue
                e.name = e.name or name
                e.queue = e.queue or queue
                e.worker = e.worker or worker
                if e.started_at is None:
                    e.started_at = started_at

    def mark_unsaved(self) -> None:
        """A save failed: write every needed entry and re-check drops on the next one."""
        with self._lock:
            self._dirty.update(self._entries)
            self._dirty.update(self._persisted)
            self._persisted_watermark = -1.0

    def reconcile_completed(self, started_at: float) -> None:
        """A reconcile that began at `started_at` (exporter clock) saw the whole backend."""
        with self._lock:
            self._watermark = max(self._watermark, started_at - RECONCILE_MARGIN)

    # -- persistence (see ledger_store.py) ---------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        from exporter.ledger_state import export_state

        with self._lock:
            return export_state(self)

    def import_state(self, data: dict[str, Any]) -> None:
        from exporter.ledger_state import import_state

        with self._lock:
            import_state(self, data)

    # -- reading ---------------------------------------------------------------------------
    def counts(self) -> LedgerCounts:
        with self._lock:
            return LedgerCounts(
                tasks=dict(self._tasks),
                exceptions=dict(self._exceptions),
                entries=len(self._entries),
                evictions=self._evictions,
                overflowed_names=self._guards["name"].overflow,
                tasks_by_worker=dict(self._by_worker),
                runtime={k: h.snapshot() for k, h in self._runtime.items()},
                queue_wait={k: h.snapshot() for k, h in self._wait.items()},
                overflow={k: g.overflow for k, g in self._guards.items()},
                watermark=self._watermark,
                label_values={k: len(g.values) for k, g in self._guards.items()},
            )

    def name_label(self, name: str | None) -> str:
        """The `name` label value a task name gets (admitted, or folded into "other")."""
        with self._lock:
            return self._guards["name"](name)

    def below_watermark(self) -> int:
        with self._lock:
            return self._below_watermark

    def running(self) -> list[tuple[str, str, float | None]]:
        """(task id, name label, started_at) of tasks started and not finished."""
        with self._lock:
            return [(tid, e.name or UNKNOWN, e.started_at) for tid, e in self._running.items()]

    def success_ratio(self, window: float | None = None) -> dict[str, tuple[int, int]]:
        """name -> (succeeded, failed) within the window ending now; "" is all names."""
        with self._lock:
            return self._outcomes.totals(self._clock.time(), window or self._window)

    @property
    def window(self) -> float:
        return self._window

    def get(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            e = self._entries.get(task_id)
            return record_of(task_id, e) if e else None

    def sent_time(self, task_id: str) -> float | None:
        with self._lock:
            e = self._entries.get(task_id)
            return e.sent_at if e else None

    def recent(self, failed_only: bool = False) -> list[TaskRecord]:
        """Finished (or retried) tasks, newest first, each id once."""
        with self._lock:
            ids = list(self._recent_failed)
            if not failed_only:
                ids += list(self._recent)
            out: list[TaskRecord] = []
            seen: set[str] = set()
            for task_id in reversed(ids):
                e = self._entries.get(task_id)
                if e is not None and task_id not in seen:
                    seen.add(task_id)
                    out.append(record_of(task_id, e))
        out.sort(key=lambda r: r.updated_at or 0.0, reverse=True)
        return out


def _lowest_unset(mask: int) -> int:
    number = 0
    while mask & (RETRY_BIT << number):
        number += 1
    return number
