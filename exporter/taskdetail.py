"""What the task detail page shows beyond the ledger's record, for the most recent tasks only.

The ledger keeps counts and one compact entry per task id; it keeps no traceback, no children
and not which source reported which state when. `TaskDetails` keeps exactly that, for the last
`size` task ids it heard of (first in, first out), fed by every source beside its call to
`Ledger.apply_many` with the same, already decoded and cleaned, `TaskUpdate`s.

Bounds: `size` tasks; per task at most `MAX_REPORTS` (state, source, time) reports: half for
the first of each (state, source) pair, half for retries (a retry storm cannot grow it); one
traceback of at most `TRACEBACK_MAX` characters (the newest), and at most `MAX_CHILDREN`
children per parent. Cost per update: two dict lookups and, for a new pair, one insert.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.taskdata import RETRY, TRACEBACK_MAX, TaskUpdate

MAX_REPORTS = 24
MAX_CHILDREN = 50


class _Detail:
    __slots__ = ("children", "parent_id", "reports", "retries", "root_id", "traceback")

    def __init__(self) -> None:
        # (state, source) -> time, the first report of each pair, in the order heard
        self.reports: dict[tuple[str, str], float | None] = {}
        self.retries: list[tuple[str, float | None]] | None = None  # (source, time) each
        self.traceback: str | None = None
        self.parent_id: str | None = None
        self.root_id: str | None = None
        self.children: list[str] | None = None


@dataclass(frozen=True)
class Report:
    state: str
    source: str
    at: float | None


@dataclass(frozen=True)
class Detail:
    """A copy of what is kept about one task id."""

    reports: tuple[Report, ...]
    traceback: str | None
    parent_id: str | None
    root_id: str | None
    children: tuple[str, ...]


class TaskDetails:
    def __init__(self, size: int = 2000) -> None:
        self.size = max(1, size)
        self._lock = threading.Lock()
        self._items: dict[str, _Detail] = {}
        self._order: deque[str] = deque()

    def note_many(self, updates: Iterable[TaskUpdate]) -> None:
        with self._lock:
            for u in updates:
                self._note(u)

    def _note(self, u: TaskUpdate) -> None:
        d = self._items.get(u.task_id)
        if d is None:
            d = self._items[u.task_id] = _Detail()
            self._order.append(u.task_id)
            if len(self._order) > self.size:
                self._items.pop(self._order.popleft(), None)
        if u.state == RETRY:
            # Each retry is its own report (events' task-retried has no number); bounded.
            retries = d.retries
            if retries is None:
                retries = d.retries = []
            if len(retries) < MAX_REPORTS // 2:
                retries.append((u.source, u.timestamp))
        else:
            key = (u.state, u.source)
            reports = d.reports
            if key not in reports and len(reports) < MAX_REPORTS // 2:
                reports[key] = u.timestamp
        if u.traceback:
            d.traceback = u.traceback[:TRACEBACK_MAX]
        if u.root_id and d.root_id is None:
            d.root_id = u.root_id
        parent = u.parent_id
        if parent and d.parent_id is None and parent != u.task_id:
            d.parent_id = parent
            p = self._items.get(parent)
            if p is not None:
                if p.children is None:
                    p.children = []
                if len(p.children) < MAX_CHILDREN and u.task_id not in p.children:
                    p.children.append(u.task_id)

    def note_known(self, updates: Iterable[TaskUpdate]) -> None:
        """Like note_many, for ids already kept only (a reconcile pass reads old results,
        which must not push the recent tasks out)."""
        with self._lock:
            items = self._items
            for u in updates:
                if u.task_id in items:
                    self._note(u)

    def get(self, task_id: str) -> Detail | None:
        with self._lock:
            d = self._items.get(task_id)
            if d is None:
                return None
            reports = [Report(st, src, at) for (st, src), at in d.reports.items()]
            reports += [Report(RETRY, src, at) for src, at in d.retries or ()]
            return Detail(
                reports=tuple(reports),
                traceback=d.traceback,
                parent_id=d.parent_id,
                root_id=d.root_id,
                children=tuple(d.children or ()),
            )

    def __len__(self) -> int:
        return len(self._items)
