"""How the ledger's label-dependent effects reach the counters: attribution with a grace.

A mixin of `Ledger` (ledger.py), which decides *that* something counts (de-duplication);
this module decides *under which name and queue*. Each effect (a counter increment, a failure
by exception, a histogram observation, a success-window entry) of an entry whose name or
queue is unknown is held in `PendingLabels` (ledger_pending.py) until a source supplies both,
or its grace (--label-grace) ends; it is then applied under the labels known by then: the
name or `unknown` (counted in `PendingLabels.unattributed`), the queue or
--default-queue-name. An entry is held at most once: after its release every later effect
applies at once, so a task whose name never comes is delayed once, not at every state.

Flags live in `Entry.seen` above the state bits: HELD (effects wait in `_pending`) and
RESOLVED (released once; never held again). Everything runs under the ledger's lock.
`observe_running` (inspect's names and queues of running tasks) lives here for that reason:
it only ever adds labels, and releases what waited for them; so does `_finish`, the
label-dependent half of a task's end (exceptions, the success window, the recent lists).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from exporter.clock import Clock
from exporter.ledger_entry import READY_MASK, Entry, share, source_bit
from exporter.ledger_last import LastTimes
from exporter.ledger_parts import OTHER, UNKNOWN, LabelGuard, OutcomeWindow, TaskHistograms
from exporter.ledger_pending import Effect, PendingLabels
from exporter.taskstate import (
    COUNTER_FOR_STATE,
    FAILURE,
    RECEIVED,
    SOURCE_INSPECT,
    STARTED,
    SUCCESS,
)

HELD = 1 << 12
RESOLVED = 1 << 13
INSPECTED = 1 << 14  # created by inspect, nothing counted yet: to dedup it is still unknown
# Shared effect tuples for the common cases: a waiting task then costs ~350 B, not ~600 B
# (tracemalloc, 20,000 tasks with received/started/succeeded/runtime/window waiting).
_STATE_OF_COUNTER = {c: s for s, c in COUNTER_FOR_STATE.items()}
_ONE: dict[str, Effect] = {c: ("c", c, 1) for c in COUNTER_FOR_STATE.values()}
_SUCCEEDED: Effect = ("w", True, 0)
_FAILED: Effect = ("w", False, 0)


class LedgerLabels:
    # Set by Ledger.__init__.
    _lock: threading.Lock
    _clock: Clock
    _entries: dict[str, Entry]
    _tasks: dict[tuple[str, str, str], int]
    _by_worker: dict[tuple[str, str, str, str], int]
    _exceptions: dict[tuple[str, str], int]
    _hists: TaskHistograms
    _guards: dict[str, LabelGuard]
    _names: LabelGuard
    _queues: LabelGuard
    _worker_label: bool
    _outcomes: OutcomeWindow
    _recent_failed: deque[str]
    _recent: deque[str]
    _running: dict[str, Entry]
    _tracking: bool
    _dirty: set[str]
    _pending: PendingLabels
    _last: LastTimes
    changes: int

    # -- effects: applied now, or held while a label is unknown ------------------------------
    # Each has a fast path for an entry whose name and queue are known (the common case, as
    # cheap as before attribution waited) and goes through `_held`/`_do` otherwise.
    def _count(self, task_id: str, e: Entry, counter: str, now: float, n: int = 1) -> None:
        if (e.name is None or e.queue is None) and self._held(
            task_id, e, _ONE[counter] if n == 1 else ("c", counter, n), now
        ):
            return
        # Admitted labels pass unchanged, so the guards are called only for new or folded ones.
        name = e.name if e.name in self._names.values else self._names(e.name)
        queue = e.queue or self._queues.default
        if queue not in self._queues.values:
            queue = self._queues(queue)
        key = (name, queue, counter)
        self._tasks[key] = self._tasks.get(key, 0) + n
        if self._worker_label:
            wkey = (name, queue, counter, self._guards["hostname"](e.worker))
            self._by_worker[wkey] = self._by_worker.get(wkey, 0) + n

    def _finish(self, task_id: str, e: Entry, state: str, now: float, settled: float) -> None:
        self._running.pop(task_id, None)
        if state == FAILURE:
            self._recent_failed.append(task_id)
        # A result reconcile backfills from hours ago is counted, but is not "recent": it
        # would skew the success ratio of the window (e.g. a whole backend at first start).
        recent = state in (SUCCESS, FAILURE) and settled >= now - self._outcomes.window
        if e.name is None or e.queue is None:
            self._outcome(task_id, e, state == FAILURE, recent, now)  # may wait for labels
        else:
            name = e.name if e.name in self._names.values else self._names(e.name)
            if state == FAILURE:
                key = (name, self._guards["exception"](e.exc_type))
                self._exceptions[key] = self._exceptions.get(key, 0) + 1
            if recent:
                self._outcomes.add(now, name, state == SUCCESS)
        self._recent.append(task_id)

    def _outcome(self, task_id: str, e: Entry, failed: bool, recent: bool, now: float) -> None:
        """A success or failure of an entry whose labels are unknown (the known case is
        inline in `Ledger._finish`): the exception by name, and the window entry."""
        if failed:
            self._effect(task_id, e, ("x", self._guards["exception"](e.exc_type), 0), now)
        if recent:
            self._effect(task_id, e, _FAILED if failed else _SUCCEEDED, now)

    def _observed(
        self, task_id: str, e: Entry, runtime: float | None, wait: float | None, now: float
    ) -> None:
        """A runtime and/or a queue-wait observation of an entry whose labels are unknown."""
        if runtime is not None:
            self._effect(task_id, e, ("r", runtime, 0), now)
        if wait is not None:
            self._effect(task_id, e, ("q", wait, 0), now)

    def _effect(self, task_id: str, e: Entry, effect: Effect, now: float) -> None:
        if not self._held(task_id, e, effect, now):
            self._do(e, effect, now)

    def _name_label(self, e: Entry) -> str:
        """The same name label as the counter's, without counting the fold a second time."""
        g = self._names
        if e.name in g.values:
            return e.name
        return OTHER if e.name and len(g.values) >= g.limit else g(e.name)

    def _labels(self, e: Entry) -> tuple[str, str]:
        return self._names(e.name), self._queues(e.queue or self._queues.default)

    def _do(self, e: Entry, effect: Effect, now: float) -> None:
        """Apply one effect under the labels known now (a held one, or with no grace)."""
        kind, a, b = effect
        if kind == "c":
            self._count("", e, a, now, b)  # released or never held: not held again
        elif kind == "x":
            key = (self._names(e.name), str(a))
            self._exceptions[key] = self._exceptions.get(key, 0) + 1
        elif kind == "w":
            self._outcomes.add(now, self._name_label(e), bool(a))
        elif kind in ("r", "q"):
            self._hists.add(kind == "r", self._labels(e), a)

    def _add(self, task_id: str, e: Entry, now: float) -> Entry:  # ledger.py
        raise NotImplementedError

    # -- holding and releasing ---------------------------------------------------------------
    def _held(self, task_id: str, e: Entry, effect: Effect, now: float) -> bool:
        """Hold the effect if the entry's labels may still come. False: apply it now."""
        pending = self._pending
        if not pending.grace or e.seen & RESOLVED:
            return False
        if not pending.hold(task_id, effect, now):
            self._release(task_id, e, now, early=True)  # too many for one task
            return True
        if not e.seen & HELD:
            e.seen |= HELD
            if len(pending.held) > pending.limit:
                for oldest in pending.over():
                    self._release(oldest, self._entries[oldest], now, early=True)
        return True

    def _release(self, task_id: str, e: Entry, now: float, early: bool = False) -> None:
        """Apply the held effects under the labels known now; the entry is never held again."""
        effects = self._pending.take(task_id)
        e.seen = (e.seen & ~HELD) | RESOLVED
        if early:
            self._pending.early += 1
        if e.name is None:
            self._pending.unattributed += 1
        for effect in effects:
            self._do(e, effect, now)
            if effect[0] == "c" and e.name:
                self._note_last(e, effect[1], now)
        if self._tracking:
            self._dirty.add(task_id)

    def _note_last(self, e: Entry, counter: str, now: float) -> None:
        """A held state's last time per task name (beat's join), once its name is known."""
        state = _STATE_OF_COUNTER.get(counter)
        if state is None:
            return
        when = {
            "SENT": e.sent_at,
            "RECEIVED": e.received_at,
            "STARTED": e.started_at,
        }.get(state, e.finished_at)
        self._last.note(self._name_label(e), state, min(when or now, now))

    def _expire(self, now: float) -> None:
        """Release every entry whose grace has ended (cheap when none has)."""
        order = self._pending.order
        if order and order[0][0] <= now:
            for task_id in self._pending.due(now):
                self._release(task_id, self._entries[task_id], now)

    # -- inspect: names and queues of running tasks ------------------------------------------
    def observe_running(
        self,
        tasks: Iterable[tuple[str, str, str | None, str, float | None]],
    ) -> None:
        """Learn (task id, name, queue, worker, started_at) from inspect, without counting;
        effects that waited for this name and queue are applied now."""
        with self._lock:
            self.changes += 1
            now = self._clock.time()
            for task_id, name, queue, worker, started_at in tasks:
                e = self._entries.get(task_id)
                if e is None:
                    # Seen running before any source reported it: its names wait for them.
                    e = self._add(task_id, Entry(STARTED if started_at else RECEIVED), now)
                    e.seen |= INSPECTED
                    e.sources |= source_bit(SOURCE_INSPECT)
                    if self._tracking:
                        self._dirty.add(task_id)
                # A finished task's names still help while its effects wait for them (the
                # snapshot may be older than the result).
                elif e.seen & READY_MASK and not e.seen & HELD:
                    continue
                if name and name != UNKNOWN:  # the poller's placeholder is no name
                    e.name = e.name or share(name)
                e.queue = e.queue or (share(queue) if queue else None)
                e.worker = e.worker or share(worker)
                if e.started_at is None and not e.seen & READY_MASK:
                    e.started_at = started_at
                if e.seen & HELD and e.name is not None and e.queue is not None:
                    self._release(task_id, e, now)
