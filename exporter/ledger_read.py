"""The ledger's read side: copies of counters, windows, running tasks and records.

A mixin of `Ledger` (ledger.py), kept apart so each module stays about one thing: everything
here takes the ledger's lock, copies, and returns plain data; nothing here writes.
"""

from __future__ import annotations

import threading
from collections import deque

from exporter.clock import Clock
from exporter.ledger_entry import Entry, record_of
from exporter.ledger_evicted import EvictedIds
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
from exporter.taskstate import TaskRecord


class LedgerReads:
    # Set by Ledger.__init__.
    _lock: threading.Lock
    _clock: Clock
    _entries: dict[str, Entry]
    _tasks: dict[tuple[str, str, str], int]
    _by_worker: dict[tuple[str, str, str, str], int]
    _exceptions: dict[tuple[str, str], int]
    _hists: TaskHistograms
    _guards: dict[str, LabelGuard]
    _evictions: int
    _below_watermark: int
    _watermark: float
    _evicted: EvictedIds
    _running: dict[str, Entry]
    _order: deque[str]
    _recent: deque[str]
    _recent_failed: deque[str]
    _outcomes: OutcomeWindow
    _last: LastTimes
    _pending: PendingLabels

    def _expire(self, now: float) -> None:  # ledger_labels.py
        raise NotImplementedError

    def counts(self) -> LedgerCounts:
        with self._lock:
            self._expire(self._clock.time())  # what waited past its grace counts now
            return LedgerCounts(
                tasks=dict(self._tasks),
                exceptions=dict(self._exceptions),
                entries=len(self._entries),
                evictions=self._evictions,
                overflowed_names=self._guards["name"].overflow,
                tasks_by_worker=dict(self._by_worker),
                runtime={k: h.snapshot() for k, h in self._hists.runtime.items()},
                queue_wait={k: h.snapshot() for k, h in self._hists.wait.items()},
                overflow={k: g.overflow for k, g in self._guards.items()},
                watermark=self._watermark,
                label_values={k: len(g.values) for k, g in self._guards.items()},
                evicted_ids=len(self._evicted),
                evicted_ids_dropped=self._evicted.given_up,
                unattributed=self._pending.unattributed,
                label_pending=len(self._pending),
                label_overflow=self._pending.early,
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

    def running_tasks(self) -> list[tuple[str, str | None, str | None, str | None, float | None]]:
        """(task id, name, queue, worker, started_at) of tasks started and not finished."""
        with self._lock:
            return [
                (tid, e.name, e.queue, e.worker, e.started_at) for tid, e in self._running.items()
            ]

    def success_ratio(self, window: float | None = None) -> dict[str, tuple[int, int]]:
        """name -> (succeeded, failed) within the window ending now; "" is all names."""
        with self._lock:
            now = self._clock.time()
            self._expire(now)
            return self._outcomes.totals(now, window or self._outcomes.window)

    @property
    def window(self) -> float:
        return self._outcomes.window

    def get(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            e = self._entries.get(task_id)
            return self._record(task_id, e) if e else None

    def _record(self, task_id: str, e: Entry) -> TaskRecord:
        """The API's record, with the name label its counters use (without admitting it)."""
        rec = record_of(task_id, e)
        names, name = self._guards["name"], e.name
        if not name:
            rec.name_label = UNKNOWN
        elif name in names.values or len(names.values) < names.limit:
            rec.name_label = name
        else:
            rec.name_label = OTHER
        return rec

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
                    out.append(self._record(task_id, e))
        out.sort(key=lambda r: r.updated_at or 0.0, reverse=True)
        return out

    def last_times(self) -> dict[str, dict[str, float]]:
        """name label -> {state: when it was last counted} (SENT, RECEIVED, STARTED, SUCCESS,
        FAILURE), from the update's own timestamp (never later than the ledger's clock)."""
        with self._lock:
            return self._last.copy()
