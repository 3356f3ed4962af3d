"""The task ledger: one place where every source's `TaskUpdate` becomes counts and records.

`Ledger` is the lock and the public face; its tables (tables.py) hold every mutable field,
and the modules beside it do the work on them under this lock: fold.py de-duplicates and
counts, attribution.py decides under which name and queue (a grace for late names),
reads.py copies for collectors and the API, durable.py encodes and decodes saved state.
Readers get copies.

Exactness across restarts and evictions rests on one watermark `W` (see docs in the README's
sources section): every ready result whose settle time is <= W has been counted. A reconcile
that scanned the whole backend from time S raises W to S - RECONCILE_MARGIN; evicting a
settled entry raises W to its settle time. A reconcile-found result at or below W is therefore
a duplicate, and only entries above W (plus unfinished ones) need remembering or persisting.
Saving itself (Redis) is the keeper's (exporter/keeper/); the ledger only exports/imports dicts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import partial
from typing import Any

from exporter.clock import Clock, SystemClock
from exporter.ledger import durable, fold, reads
from exporter.ledger.attribution import expire, labels
from exporter.ledger.counts import LedgerCounts
from exporter.ledger.evicted import KEY_MASK
from exporter.ledger.guard import UNKNOWN
from exporter.ledger.hosts import HostCounts, HostView, compat_default_queue, hosts_for
from exporter.ledger.packed import finished, ids
from exporter.ledger.tables import LedgerTables
from exporter.taskdata import TaskRecord, TaskUpdate

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
        label_grace: float = 0.0,
        default_queue: str = UNKNOWN,
        hosts: HostCounts | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        # Bumped by every write; read without the lock by the /metrics renderer (exposition.py)
        # to tell whether anything may have changed since its last render.
        self.changes = 0
        self._tables = LedgerTables(
            max_tasks=max_tasks,
            max_task_names=max_task_names,
            max_exception_types=max_exception_types,
            recent_size=recent_size,
            recent_failed_size=recent_failed_size,
            success_window=success_window,
            buckets=buckets,
            wait_buckets=wait_buckets,
            worker_label=worker_label,
            derive_runtime=derive_runtime,
            label_grace=label_grace,
            default_queue=default_queue,
            hosts=hosts,
        )
        self._labels = partial(labels, self._tables)  # an entry's histogram row

    @classmethod
    def from_config(cls, config: Any, clock: Clock | None = None) -> Ledger:
        hosts = hosts_for(config)  # --compat danihodovic only
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
            default_queue=compat_default_queue(config) if hosts else config.default_queue_name,
            hosts=hosts,
        )

    # -- writing -------------------------------------------------------------------------
    def apply(self, update: TaskUpdate) -> bool:
        """Fold one update in. Returns True when it counted (not a duplicate)."""
        return self.apply_many((update,)) > 0

    def apply_many(self, updates: Iterable[TaskUpdate]) -> int:
        with self._lock:
            self.changes += 1
            t = self._tables
            now = self._clock.time()
            if t.pending.next_at <= now:  # (inline: this runs per event batch)
                expire(t, now)
            apply, labels_of = fold.apply, self._labels
            return sum(apply(t, u, now, labels_of) for u in updates)

    def observe_running(
        self, tasks: Iterable[tuple[str, str, str | None, str, float | None]]
    ) -> None:
        """Learn (task id, name, queue, worker, started_at) of running tasks from inspect,
        without counting; effects that waited for this name and queue are applied now."""
        with self._lock:
            self.changes += 1
            fold.observe_running(self._tables, tasks, self._clock.time())

    def mark_unsaved(self) -> None:
        """A save failed: write every needed entry and re-check drops on the next one."""
        with self._lock:
            t = self._tables
            t.dirty.update(ids(t))
            t.dirty.update(t.persisted)
            t.persisted_watermark = -1.0

    def expect_backfill(self) -> None:
        """A reconcile will feed this ledger: remember evicted ids it could count again."""
        with self._lock:
            self._tables.backfill = True

    def settled_ids(self, task_ids: Iterable[str | None]) -> set[str | None]:
        """Which of these ids (None: never) a reconcile need not read (finished or covered)."""
        with self._lock:
            entries: dict[Any, Any] = self._tables.entries
            has, evicted = self._tables.cold.has, self._tables.evicted.keys
            out = set()
            for task_id in task_ids:
                e = entries.get(task_id)
                if (
                    (e is not None and finished(e))
                    or (task_id is not None and hash(task_id) & KEY_MASK in evicted)
                    or (e is None and task_id is not None and has(task_id))  # (finished)
                ):
                    out.add(task_id)
            return out

    def reconcile_completed(self, started_at: float) -> None:
        """A reconcile that began at `started_at` (exporter clock) saw the whole backend."""
        with self._lock:
            t = self._tables
            t.watermark = max(t.watermark, started_at - RECONCILE_MARGIN)
            t.evicted.prune(t.watermark)
            t.pass_position = None

    def note_pass(self, position: tuple[str, int, float]) -> None:
        """Where the running reconcile pass has folded up to (saved with those counts)."""
        with self._lock:
            self._tables.pass_position = position

    @property
    def pass_position(self) -> tuple[str, int, float] | None:
        """An unfinished reconcile pass: (Redis run_id, next cursor, start), or None."""
        with self._lock:
            return self._tables.pass_position

    # -- saved state (durable.py encodes; the keeper, exporter/keeper/, writes) ------------
    def export_state(self) -> dict[str, Any]:
        with self._lock:
            return durable.export_state(self._tables)

    def import_state(self, data: dict[str, Any]) -> None:
        with self._lock:
            self.changes += 1
            durable.import_state(self._tables, data, self._clock.time())

    # -- reading (copies) ------------------------------------------------------------------
    def counts(self) -> LedgerCounts:
        with self._lock:
            return reads.counts(self._tables, self._clock.time())

    def host_counts(self) -> HostView | None:
        """Outcomes and runtimes per worker node (`--compat danihodovic`), else None."""
        with self._lock:
            return reads.host_view(self._tables, self._clock.time())

    def totals(self) -> dict[str, int]:
        """counter -> total over every name and queue (cheap: no histogram copies)."""
        with self._lock:
            return reads.totals(self._tables, self._clock.time())

    def name_label(self, name: str | None) -> str:
        """The `name` label value a task name gets (admitted, or folded into "other")."""
        with self._lock:
            return self._tables.names(name)

    def below_watermark(self) -> int:
        with self._lock:
            return self._tables.below_watermark

    def running_tasks(self) -> list[reads.RunningTask]:
        """(task id, name, queue, worker, started_at) of tasks started and not finished."""
        with self._lock:
            return reads.running_tasks(self._tables)

    def success_ratio(self, window: float | None = None) -> dict[str, tuple[int, int]]:
        """name -> (succeeded, failed) within the window ending now; "" is all names."""
        with self._lock:
            return reads.success_ratio(self._tables, self._clock.time(), window)

    @property
    def window(self) -> float:
        return self._tables.outcomes.window

    def get(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            return reads.record(self._tables, task_id)

    def sent_time(self, task_id: str) -> float | None:
        with self._lock:
            return reads.sent_time(self._tables, task_id)

    def recent(self, failed_only: bool = False) -> list[TaskRecord]:
        """Finished (or retried) tasks, newest first, each id once."""
        with self._lock:
            out = reads.recent(self._tables, failed_only)
        out.sort(key=lambda r: r.updated_at or 0.0, reverse=True)
        return out

    def last_times(self) -> dict[str, dict[str, float]]:
        """name label -> {state: when it was last counted} (SENT, RECEIVED, STARTED, SUCCESS,
        FAILURE), from the update's own timestamp (never later than the ledger's clock)."""
        with self._lock:
            return self._tables.last.copy()
