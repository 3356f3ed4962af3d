"""`PendingLabels`: label-dependent effects held while a task's name or queue is unknown.

A state of a task id counts once, at once (the ledger's de-duplication and totals stay
immediate), but what that count is labelled with may still be unknown: without
`result_extended` a result carries no name, task-received carries no queue, and sources
arrive on different connections in any order. So the ledger holds the label-dependent
effects of such an entry (counter increments, exceptions by name, histogram observations,
the success-window entry) here until a source supplies the name and queue, or the grace
ends; the ledger then applies them under the labels known by then (`ledger.py` `_release`).

Invariant: an effect is either held here or applied to the ledger's counters, never both and
never neither; an id is in `held` exactly when its entry carries the HELD flag.

Bound: at most `limit` ids are held (the ledger passes a quarter of --ledger-max-tasks), and
each holds at most MAX_EFFECTS effects. Past either bound the oldest id (or the over-full
one) is released early, and the ledger counts that as an overflow. The deadline queue may
also hold stale items for ids released before their deadline; it is compacted once it is
twice the bound, so it stays O(limit) too. Nothing here locks: the ledger calls it under its
own lock.

Memory: the store fills to its bound whenever tasks arrive faster than limit / grace (10,000
a second at the defaults), e.g. a cluster without task-sent events, whose tasks no source
gives a queue, or a reconcile of results stored without a name. So an id holds one list
(its deadline, its runtime as a bare float, then its other effects: the common ones are
shared tuples, attribution.py), the deadline queue is two deques of plain references,
and the deadline float is shared by every id held in the same ledger batch. At the bound
(50,000 ids, each with received, started, succeeded, a runtime and a window entry) that is
10.7 MB, 21.9 MB as (deadline, list of effect tuples) and (deadline, id) queue items
(bench/ledger_memory.py --parts). Measured and not kept: a tuple rebuilt per effect (1.4 MB
less, 1.5% more instructions per task), every effect kind packed through a function (0.45 s
more CPU per 200,000 tasks).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from exporter.ledger.churn import Churn

# (kind, a, b): ("c", counter, n) a counter increment; ("x", exception label, 0) a failure by
# exception; ("w", ok, at) a success-window entry; ("r" | "q", value, 0) a runtime or
# queue-wait observation. Plain tuples of str/int/float/bool, so they can be saved as JSON.
Effect = tuple[str, Any, Any]
# A task has at most 8 states, 2 histograms, 1 exception and 1 window entry; retries add one
# each. More than this within one grace is a retry storm or a hostile stream: release it.
MAX_EFFECTS = 32


class PendingLabels:
    __slots__ = (
        "_churn",
        "_deadline",
        "_now",
        "at",
        "early",
        "grace",
        "held",
        "ids",
        "limit",
        "unattributed",
    )

    def __init__(self, grace: float, limit: int) -> None:
        self.grace = grace
        self.limit = max(1, limit)
        # id -> [deadline, runtime or None, effect, ...]: a task's (first) runtime effect is
        # held as its bare float, the one effect that is not a shared tuple; it is handed
        # back after the others (the order of a task's effects changes nothing).
        self.held: dict[str, list[Any]] = {}
        # The deadline queue, oldest first, as two deques in step: `at[i]` is the deadline of
        # `ids[i]`. An item is stale when its id was released (or re-held with another
        # deadline) since.
        self.at: deque[float] = deque()
        self.ids: deque[str] = deque()
        self._now = self._deadline = float("nan")  # the last `now` and its deadline
        # Taken ids leave dead slots in `held` (churn.py): 3.8 -> 1.9 MB of table at 50,000
        # held when copied every 0.7 x limit takes, with room for 37,000 more before it grows.
        self._churn = Churn(self.limit * 7 // 10)
        self.unattributed = 0  # tasks released without a name: counted under "unknown"
        self.early = 0  # tasks released before their grace ended (a bound)

    def __len__(self) -> int:
        return len(self.held)

    def _deadline_for(self, now: float) -> float:
        # One float object per ledger batch (they share `now`), not one per held id.
        if now != self._now:
            self._now, self._deadline = now, now + self.grace
        return self._deadline

    def hold(self, task_id: str, effect: Effect, now: float) -> bool:
        """Hold one effect. Returns False when the id now holds too many (release it)."""
        slot = self.held.get(task_id)
        if slot is None:
            deadline = self._deadline if now == self._now else self._deadline_for(now)
            if effect[0] == "r" and effect[1].__class__ is float:
                self.held[task_id] = [deadline, effect[1]]
            else:
                self.held[task_id] = [deadline, None, effect]
            self.at.append(deadline)
            self.ids.append(task_id)
            if len(self.ids) > 2 * self.limit:
                self._compact()
            return True
        if effect[0] == "r" and slot[1] is None and effect[1].__class__ is float:
            slot[1] = effect[1]
        else:
            slot.append(effect)
        return len(slot) - (slot[1] is None) <= MAX_EFFECTS + 1

    def restore(self, task_id: str, effects: list[Effect], now: float) -> None:
        """Hold effects read back from saved state, with a fresh grace."""
        if effects and task_id not in self.held:
            deadline = self._deadline_for(now)
            self.held[task_id] = [deadline, None, *effects[:MAX_EFFECTS]]
            self.at.append(deadline)
            self.ids.append(task_id)

    def take(self, task_id: str) -> list[Effect]:
        """The effects held for this id (none if it holds none), no longer held."""
        slot = self.held.pop(task_id, None)
        if slot is None:
            return []
        if self._churn.deleted():
            self.held = dict(self.held)
        runtime = slot[1]
        del slot[:2]  # (the list is no longer held: it becomes the answer)
        if runtime is not None:
            slot.append(("r", runtime, 0))
        return slot

    def effects(self, task_id: str) -> list[Effect]:
        slot = self.held.get(task_id)
        if slot is None:
            return []
        out = slot[2:]
        if slot[1] is not None:
            out.append(("r", slot[1], 0))
        return out

    def due(self, now: float) -> list[str]:
        """Ids whose grace has ended, oldest first (still held: the caller takes them)."""
        out: list[str] = []
        at, ids, held = self.at, self.ids, self.held
        while at and at[0] <= now:
            deadline = at.popleft()
            task_id = ids.popleft()
            slot = held.get(task_id)
            if slot is not None and slot[0] == deadline:
                out.append(task_id)
        return out

    def over(self) -> list[str]:
        """The oldest ids beyond the bound (still held: the caller takes them)."""
        out: list[str] = []
        excess = len(self.held) - self.limit
        at, ids, held = self.at, self.ids, self.held
        while excess > 0 and ids:
            deadline = at.popleft()
            task_id = ids.popleft()
            slot = held.get(task_id)
            if slot is not None and slot[0] == deadline:
                out.append(task_id)
                excess -= 1
        return out

    def _compact(self) -> None:
        # In place: the ledger keeps a reference to `at` for its cheap "anything due?" test.
        held = self.held
        kept = [
            (deadline, task_id)
            for deadline, task_id in zip(self.at, self.ids, strict=True)
            if (slot := held.get(task_id)) is not None and slot[0] == deadline
        ]
        self.at.clear()
        self.ids.clear()
        self.at.extend(k[0] for k in kept)
        self.ids.extend(k[1] for k in kept)
