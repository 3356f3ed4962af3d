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
"""

from __future__ import annotations

from collections import deque
from typing import Any

# (kind, a, b): ("c", counter, n) a counter increment; ("x", exception label, 0) a failure by
# exception; ("w", ok, at) a success-window entry; ("r" | "q", value, 0) a runtime or
# queue-wait observation. Plain tuples of str/int/float/bool, so they can be saved as JSON.
Effect = tuple[str, Any, Any]
# A task has at most 8 states, 2 histograms, 1 exception and 1 window entry; retries add one
# each. More than this within one grace is a retry storm or a hostile stream: release it.
MAX_EFFECTS = 32


class PendingLabels:
    __slots__ = ("early", "grace", "held", "limit", "order", "unattributed")

    def __init__(self, grace: float, limit: int) -> None:
        self.grace = grace
        self.limit = max(1, limit)
        self.held: dict[str, tuple[float, list[Effect]]] = {}
        # (deadline, task id), oldest first; an item is stale when its id was released (or
        # re-held with another deadline) since.
        self.order: deque[tuple[float, str]] = deque()
        self.unattributed = 0  # tasks released without a name: counted under "unknown"
        self.early = 0  # tasks released before their grace ended (a bound)

    def __len__(self) -> int:
        return len(self.held)

    def hold(self, task_id: str, effect: Effect, now: float) -> bool:
        """Hold one effect. Returns False when the id now holds too many (release it)."""
        slot = self.held.get(task_id)
        if slot is None:
            deadline = now + self.grace
            self.held[task_id] = (deadline, [effect])
            self.order.append((deadline, task_id))
            if len(self.order) > 2 * self.limit:
                self._compact()
            return True
        slot[1].append(effect)
        return len(slot[1]) <= MAX_EFFECTS

    def restore(self, task_id: str, effects: list[Effect], now: float) -> None:
        """Hold effects read back from saved state, with a fresh grace."""
        if effects and task_id not in self.held:
            deadline = now + self.grace
            self.held[task_id] = (deadline, list(effects[:MAX_EFFECTS]))
            self.order.append((deadline, task_id))

    def take(self, task_id: str) -> list[Effect]:
        """The effects held for this id (none if it holds none), no longer held."""
        slot = self.held.pop(task_id, None)
        return slot[1] if slot is not None else []

    def effects(self, task_id: str) -> list[Effect]:
        slot = self.held.get(task_id)
        return slot[1] if slot is not None else []

    def due(self, now: float) -> list[str]:
        """Ids whose grace has ended, oldest first (still held: the caller takes them)."""
        out: list[str] = []
        order, held = self.order, self.held
        while order and order[0][0] <= now:
            deadline, task_id = order.popleft()
            slot = held.get(task_id)
            if slot is not None and slot[0] == deadline:
                out.append(task_id)
        return out

    def over(self) -> list[str]:
        """The oldest ids beyond the bound (still held: the caller takes them)."""
        out: list[str] = []
        excess = len(self.held) - self.limit
        order, held = self.order, self.held
        while excess > 0 and order:
            deadline, task_id = order.popleft()
            slot = held.get(task_id)
            if slot is not None and slot[0] == deadline:
                out.append(task_id)
                excess -= 1
        return out

    def _compact(self) -> None:
        # In place: the ledger keeps a reference to `order` for its cheap "anything due?" test.
        held = self.held
        kept = [
            (deadline, task_id)
            for deadline, task_id in self.order
            if (slot := held.get(task_id)) is not None and slot[0] == deadline
        ]
        self.order.clear()
        self.order.extend(kept)
