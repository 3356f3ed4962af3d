"""The task ledger: one place where every source's `TaskUpdate` becomes counts and records.

It owns de-duplication (a state of a task id counts once, whichever source reported it; a
retry counts once per retry number), the counters behind `celery_task_*_total`, the runtime
and queue-wait histograms, the success-ratio window, running tasks, and the bounded
recent-task lists the API reads. All state sits behind one lock; readers get copies. Which
name and queue a count goes under, and when (a grace for late names), is ledger_labels.py's.

Exactness across restarts and evictions rests on one watermark `W` (see docs in the README's
sources section): every ready result whose settle time is <= W has been counted. A reconcile
that scanned the whole backend from time S raises W to S - RECONCILE_MARGIN; evicting a
settled entry raises W to its settle time. A reconcile-found result at or below W is therefore
a duplicate, and only entries above W (plus unfinished ones) need remembering or persisting.
Persistence itself (Redis) lives in `ledger_store.py`; this module only exports/imports dicts.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from exporter.clock import Clock, SystemClock
from exporter.ledger_entry import BIT, READY_MASK, Entry, source_bit
from exporter.ledger_evicted import EvictedIds
from exporter.ledger_labels import HELD, INSPECTED, LedgerLabels
from exporter.ledger_last import LastTimes
from exporter.ledger_parts import (
    OTHER,
    UNKNOWN,
    LabelGuard,
    LedgerCounts,
    OutcomeWindow,
    TaskHistograms,
)
from exporter.ledger_pending import PendingLabels
from exporter.ledger_read import LedgerReads
from exporter.taskstate import (
    COUNTER_FOR_STATE,
    RETRY,
    SENT,
    SOURCE_EVENTS,
    SOURCE_RECONCILE,
    STARTED,
    TaskUpdate,
)

__all__ = ["OTHER", "UNKNOWN", "Ledger", "LedgerCounts"]

# Worker clocks may lag the exporter's; a result dated up to this long before a reconcile
# started is still assumed to have been present when it scanned.
RECONCILE_MARGIN = 120.0
# A hostile or corrupt result cannot add more retries than this in one update.
MAX_RETRY_STEP = 1000


class Ledger(LedgerLabels, LedgerReads):
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
        label_grace: float = 0.0,
        default_queue: str = UNKNOWN,
    ) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        # Bumped by every write; read without the lock by the /metrics renderer (exposition.py)
        # to tell whether anything may have changed since its last render.
        self.changes = 0
        self._max_tasks = max_tasks
        self._worker_label = worker_label
        # Plain dict + first-seen order: cheaper per task than an OrderedDict. Eviction is
        # first-in first-out; a task evicted while open is simply counted on from scratch.
        self._entries: dict[str, Entry] = {}
        self._order: deque[str] = deque()
        self._tasks: dict[tuple[str, str, str], int] = {}
        self._by_worker: dict[tuple[str, str, str, str], int] = {}
        self._exceptions: dict[tuple[str, str], int] = {}
        # Without events there is no `runtime` field: derive it from pub/sub receive times.
        self._hists = TaskHistograms(tuple(buckets), tuple(wait_buckets), derive_runtime)
        self._guards = {
            "name": LabelGuard(max_task_names),
            "queue_name": LabelGuard(max_task_names),
            "exception": LabelGuard(max_exception_types),
            "hostname": LabelGuard(max_task_names),
        }
        self._names, self._queues = self._guards["name"], self._guards["queue_name"]
        self._evictions = 0
        self._below_watermark = 0
        self._watermark = 0.0
        self._running: dict[str, Entry] = {}
        self._recent: deque[str] = deque(maxlen=recent_size)
        self._recent_failed: deque[str] = deque(maxlen=recent_failed_size)
        self._outcomes = OutcomeWindow(success_window)
        self._last = LastTimes()  # per name label: last sent/received/started/succeeded/failed
        # Evicted task ids whose results a reconcile could still find above the watermark,
        # oldest first; bounded like the entries, so the oldest are given up first.
        self._evicted = EvictedIds(max(1, max_tasks // 2))
        self._backfill = False  # a reconcile source exists (see expect_backfill)
        # Label-dependent effects waiting for a name or queue (ledger_labels.py); a quarter
        # of the entries may wait at once, far more than a grace of seconds needs.
        self._pending = PendingLabels(label_grace, max(1, max_tasks // 4))
        # (Kept on the guard and in _pending, not on the ledger: past 30 attributes CPython
        # 3.11 stops sharing an instance's keys and every self._x load gets slower. Callgrind,
        # event fixture, one apply_many per update: +8.2% instructions per update over the
        # ledger before attribution with 33 attributes, +5.5% with these 29.)
        self._queues.default = default_queue or UNKNOWN
        # An unfinished reconcile pass: (Redis run_id, next cursor, start), saved with state.
        self.pass_position: tuple[str, int, float] | None = None
        # persistence bookkeeping (only once a store saves us): ids changed since the last
        # export, ids held in the store
        self._tracking = False
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
            label_grace=config.label_grace,
            default_queue=config.default_queue_name,
        )

    # -- writing -------------------------------------------------------------------------
    def apply(self, update: TaskUpdate) -> bool:
        """Fold one update in. Returns True when it counted (not a duplicate)."""
        return self.apply_many((update,)) > 0

    def apply_many(self, updates: Iterable[TaskUpdate]) -> int:
        with self._lock:
            self.changes += 1
            now = self._clock.time()
            due = self._pending.order  # (deadline, id) oldest first
            if due and due[0][0] <= now:  # (inline: this runs per event batch)
                self._expire(now)
            return sum(self._apply(u, now) for u in updates)

    def _apply(self, u: TaskUpdate, now: float) -> bool:
        task_id = u.task_id
        state = u.state
        bit = BIT.get(state, 0)
        # Reconcile dates a result by its date_done; live sources settle it when heard.
        backfill = u.source == SOURCE_RECONCILE
        settle = u.timestamp if backfill and u.timestamp else now
        e = self._entries.get(task_id)
        if e is None or e.seen & INSPECTED:  # (an entry only inspect knows is as new)
            # Only a backfill can be stale: a live message is news, however late it is.
            if (
                backfill
                and bit & READY_MASK
                and (settle <= self._watermark or task_id in self._evicted.ids)
            ):
                self._below_watermark += 1
                return False
            if backfill and not bit & READY_MASK and self._evictions:
                # An unfinished task we no longer know may be one we evicted: its retries
                # were counted then, and counting them again would be wrong.
                return False
            if e is None:
                e = self._add(task_id, Entry(state), now)
            e.seen &= ~INSPECTED
        e.merge(u, now, source_bit(u.source))
        if e.seen & HELD and e.name is not None and e.queue is not None:
            self._release(task_id, e, now)  # this update named the task: apply what waited
        if self._tracking:
            self._dirty.add(task_id)
        counted = False
        if state == RETRY:
            if u.retries is not None:
                floor = u.retries + 1  # result_extended numbers the retry
            elif u.source == SOURCE_EVENTS:
                e.retry_ev += 1  # task-retried has no number: the n-th one heard is >= n
                floor = e.retry_ev
            else:
                e.retry_other += 1
                floor = e.retry_other
            counted = self._raise_retries(task_id, e, floor, now)
        elif bit and not e.seen & bit:
            e.seen |= bit
            counted = True
            self._count(task_id, e, COUNTER_FOR_STATE[state], now)
            if bit & READY_MASK:
                e.settled = settle
                self._finish(task_id, e, state, now, settle)
            elif state == STARTED and not e.seen & READY_MASK:
                self._running[task_id] = e
            if e.name:  # (held until its name is known otherwise: ledger_labels._release)
                self._last.note(self._name_label(e), state, min(u.timestamp or now, now))
        if u.retries and state != RETRY and state != SENT:
            # Attempt r (received, started or final) means r retries happened before it.
            counted |= self._raise_retries(task_id, e, u.retries, now)
        # Both histograms need a runtime or a start time: a backfilled result has neither.
        if (u.runtime is not None or e.started_at is not None) and not (
            e.runtime_done and e.wait_done
        ):
            # Labels known: observed at once; else the observations may wait for them.
            known = e.name is not None and e.queue is not None
            runtime, wait = self._hists.observe(e, u.runtime, now, self._labels if known else None)
            if runtime is not None or wait is not None:
                self._observed(task_id, e, runtime, wait, now)
        return counted

    def _add(self, task_id: str, e: Entry, now: float) -> Entry:
        self._entries[task_id] = e
        self._order.append(task_id)
        if len(self._entries) > self._max_tasks:
            self._evict(now)
        return e

    def _raise_retries(self, task_id: str, e: Entry, floor: int, now: float) -> bool:
        """Retries are counted as a lower bound that only grows: max over what each source
        proves (its own count of unnumbered retries, retry numbers, attempt numbers). So the
        same retry heard from events and pub/sub, in any order, counts once."""
        delta = min(floor, e.retry_total + MAX_RETRY_STEP) - e.retry_total
        if delta <= 0:
            return False
        e.retry_total += delta
        self._count(task_id, e, "retried", now, delta)
        self._recent.append(task_id)
        return True

    def _evict(self, now: float) -> None:
        while len(self._entries) > self._max_tasks and self._order:
            task_id = self._order.popleft()
            e = self._entries[task_id]
            if e.seen & HELD:
                self._release(task_id, e, now, early=True)  # its effects count before it goes
            del self._entries[task_id]
            self._running.pop(task_id, None)
            self._evictions += 1
            # A counted result a reconcile could find again must stay known as counted.
            if self._backfill and e.settled is not None and e.settled > self._watermark:
                self._evicted.add(task_id, e.settled)
            if self._tracking:
                self._dirty.add(task_id)

    def mark_unsaved(self) -> None:
        """A save failed: write every needed entry and re-check drops on the next one."""
        with self._lock:
            self._dirty.update(self._entries)
            self._dirty.update(self._persisted)
            self._persisted_watermark = -1.0

    def expect_backfill(self) -> None:
        """A reconcile will feed this ledger: remember evicted ids it could count again."""
        with self._lock:
            self._backfill = True

    def settled_ids(self, task_ids: Iterable[str | None]) -> set[str | None]:
        """Which of these ids (None: never) a reconcile need not read (finished or covered)."""
        with self._lock:
            entries: dict[Any, Entry] = self._entries
            evicted: dict[Any, float] = self._evicted.ids
            out = set()
            for task_id in task_ids:
                e = entries.get(task_id)
                if (e is not None and e.seen & READY_MASK) or task_id in evicted:
                    out.add(task_id)
            return out

    def reconcile_completed(self, started_at: float) -> None:
        """A reconcile that began at `started_at` (exporter clock) saw the whole backend."""
        with self._lock:
            self._watermark = max(self._watermark, started_at - RECONCILE_MARGIN)
            self._evicted.prune(self._watermark)
            self.pass_position = None

    def note_pass(self, position: tuple[str, int, float]) -> None:
        """Where the running reconcile pass has folded up to (saved with those counts)."""
        with self._lock:
            self.pass_position = position

    # -- persistence (see ledger_store.py) ---------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        from exporter.ledger_state import export_state

        with self._lock:
            return export_state(self)

    def import_state(self, data: dict[str, Any]) -> None:
        from exporter.ledger_state import import_state

        with self._lock:
            self.changes += 1
            import_state(self, data)
