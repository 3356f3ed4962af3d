"""`PendingLabels`: label-dependent effects held while a task's name or queue is unknown.

A state of a task id counts once, at once (the ledger's de-duplication and totals stay
immediate), but what that count is labelled with may still be unknown: without
`result_extended` a result carries no name, task-received carries no queue, and sources
arrive on different connections in any order. So the ledger holds the label-dependent
effects of such an entry (counter increments, exceptions by name, histogram observations,
the success-window entry) here until a source supplies the name and queue, or the grace
ends; attribution.py then applies them under the labels known by then (`release`).

Invariant: an effect is either held here or applied to the ledger's counters, never both and
never neither; an id is in `held` exactly when its entry carries the HELD flag.

What is held per id is one int (`code`), shared between ids that hold the same: a bit per
counter of a state (each state of an entry counts once), a bit per success-window entry
(success, failure), the number of retried increments and their sum, and two bits that say
"the entry's own runtime" and "the entry's own exception type": those values are read from
the entry when the effects are released or saved (`expand`). The fold pins them (`pin`:
copied out as explicit effects) before an update that could change them merges into a held
entry. Whatever the code cannot say (a runtime derived from receive times, a queue wait, an
exception label other than the type itself, a saved effect read back, a second one of a
kind) is kept as an explicit effect in a list [code, effect, ...], the rare case.

Bound: at most `limit` ids are held (the ledger passes a quarter of --ledger-max-tasks), and
each holds at most MAX_EFFECTS effects. Past either bound the oldest id (or the over-full
one) is released early, and the ledger counts that as an overflow. The deadline queue keeps
(deadline, id, entry) items; an item is live while its entry carries HELD (an entry is held
at most once in its life), so an id evicted, released and held again by a new entry is not
released early by its old item. Stale items are compacted once the queue is twice the
bound, so it stays O(limit) too. Nothing here locks: the ledger calls it under its own lock.

Memory: the store fills to its bound whenever tasks arrive faster than limit / grace (10,000
a second at the defaults), e.g. a cluster without task-sent events, whose tasks no source
gives a queue, or a reconcile of results stored without a name. At the bound (50,000 ids,
each with received, started, succeeded, a runtime and a window entry) that is 3.2 MB: per
id a slot of the dict (whose table is sized for 87,000 at that bound), two queue references
and a deadline double (bench/ledger_memory.py --parts); it was 10.7 MB as a list of effects
per id, and 21.9 MB as (deadline, list of effect tuples) per id with (deadline, id) queue
tuples.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from typing import Any

from exporter.ledger.churn import Churn
from exporter.ledger.entry import BIT, Entry
from exporter.taskdata import COUNTER_FOR_STATE

# (kind, a, b): ("c", counter, n) a counter increment; ("x", exception label, 0) a failure by
# exception; ("w", ok, at) a success-window entry; ("r" | "q", value, 0) a runtime or
# queue-wait observation. Plain tuples of str/int/float/bool, so they can be saved as JSON.
Effect = tuple[str, Any, Any]
# A task has at most 8 states, 2 histograms, 1 exception and 1 window entry; retries add one
# each. More than this within one grace is a retry storm or a hostile stream: release it.
MAX_EFFECTS = 32

HELD = 1 << 12  # `Entry.seen` flag: effects wait here (attribution.py sets and clears it)

# -- the code: what an id holds, as one int ------------------------------------------------
# Bits 0-6: the counter of a state, with the state's BIT (each state of an entry counts once).
COUNTER_CODE: dict[str, int] = {COUNTER_FOR_STATE[s]: bit for s, bit in BIT.items()}
WIN_OK = 1 << 7  # a success-window entry: succeeded
WIN_FAILED = 1 << 8  # failed
RUNTIME = 1 << 9  # a runtime observation: the entry's `runtime`
EXCEPTION = 1 << 10  # a failure by exception, labelled with the entry's `exc_type`
_ONCE = (1 << 11) - 1  # the bits above: one of each at most, else explicit
_RETRIES = 11  # bits 11-16: how many retried increments (at most MAX_EFFECTS + 1)
_RETRY_SUM = 17  # bits 17 and up: their sum
RETRIED_ONCE = 1 << _RETRIES | 1 << _RETRY_SUM
_NO_RETRIES = 1 << _RETRIES  # a code below it holds at most 11 effects
COUNTER_CODE["retried"] = RETRIED_ONCE
_PINNED = RUNTIME | EXCEPTION

_ONE: dict[int, Effect] = {bit: ("c", c, 1) for c, bit in COUNTER_CODE.items() if bit < WIN_OK}
_ONE[WIN_OK] = ("w", True, 0)
_ONE[WIN_FAILED] = ("w", False, 0)
# code & 511 -> its effects (shared tuples), built once
_SIMPLE: tuple[tuple[Effect, ...], ...] = tuple(
    tuple(effect for bit, effect in sorted(_ONE.items()) if code & bit) for code in range(512)
)
# Codes are a few dozen values, mostly above the 256 CPython caches: one object per value,
# looked up by index (a code with retries, rare, is its own object).
_CODE_OBJECT: tuple[int, ...] = tuple(range(_NO_RETRIES))


def retried_code(n: int) -> int:
    """The code of one retried increment of `n` (n >= 1)."""
    return 1 << _RETRIES | n << _RETRY_SUM


def effect_count(code: int) -> int:
    return (code & _ONCE).bit_count() + (code >> _RETRIES & 63)


def expand(value: Any, e: Entry) -> list[Effect]:
    """The effects a held value stands for (fresh list). Derived ones read the entry now;
    retried increments come back as as many increments with the same sum (what they add
    to every counter, and how many label look-ups they make, are the same)."""
    if value.__class__ is int:
        code, extra = value, ()
    else:
        code, extra = value[0], value[1:]
    out = list(_SIMPLE[code & 511])
    if code & RUNTIME:
        out.append(("r", e.runtime, 0))
    if code & EXCEPTION:
        out.append(("x", e.exc_type, 0))
    k = code >> _RETRIES & 63
    if k:
        out.extend([("c", "retried", 1)] * (k - 1))
        out.append(("c", "retried", (code >> _RETRY_SUM) - (k - 1)))
    out.extend(extra)
    return out


class PendingLabels:
    __slots__ = (
        "_churn",
        "_deadline",
        "_head",
        "_now",
        "at",
        "early",
        "entries",
        "grace",
        "held",
        "ids",
        "limit",
        "next_at",
        "unattributed",
    )

    def __init__(self, grace: float, limit: int) -> None:
        self.grace = grace
        self.limit = max(1, limit)
        # id -> code (an int, shared), or [code, explicit effect, ...]
        self.held: dict[str, Any] = {}
        # The deadline queue, oldest first, in step: `at[_head + i]` is the deadline of
        # `ids[i]`, held by the entry `entries[i]`; stale once that entry is released. The
        # deadlines are doubles in an array (each ledger call has its own `now`, so a float
        # object per id was 1.6 MB at the bound), popped by moving `_head`.
        self.at = array("d")
        self._head = 0
        self.ids: deque[str] = deque()
        self.entries: deque[Entry] = deque()
        self.next_at = math.inf  # the oldest deadline queued: read by the ledger per call
        self._now = self._deadline = float("nan")  # the last `now` and its deadline
        # Taken ids leave dead slots in `held` (churn.py): copied every 0.7 x limit takes.
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

    def _queue(self, task_id: str, e: Entry, now: float) -> None:
        if len(self.ids) >= 2 * self.limit:
            self._compact()  # (before: this entry is not flagged HELD yet)
        deadline = self._deadline if now == self._now else self._deadline_for(now)
        if not self.ids:
            self.next_at = deadline
        self.at.append(deadline)
        self.ids.append(task_id)
        self.entries.append(e)

    def hold(
        self, task_id: str, e: Entry, code: int, now: float, extra: Effect | None = None
    ) -> bool:
        """Hold one effect: `code` (RUNTIME, EXCEPTION: the entry's value now) and/or an
        explicit `extra`. Returns False when the id now holds too many (release it)."""
        held = self.held
        value = held.get(task_id)
        if value is None:
            if extra is not None:
                held[task_id] = [code, extra]
            else:
                held[task_id] = _CODE_OBJECT[code] if code < _NO_RETRIES else code
            # (the queue's append inline: once per held id)
            ids = self.ids
            if len(ids) >= 2 * self.limit:
                self._compact()  # (before: this entry is not flagged HELD yet)
            deadline = self._deadline if now == self._now else self._deadline_for(now)
            if not ids:
                self.next_at = deadline
            self.at.append(deadline)
            ids.append(task_id)
            self.entries.append(e)
            return True
        if value.__class__ is int:
            if extra is None and not value & code & _ONCE:
                value += code
                if value < _NO_RETRIES:
                    held[task_id] = _CODE_OBJECT[value]
                    return True
                held[task_id] = value
                return effect_count(value) <= MAX_EFFECTS
            value = held[task_id] = [value]
        if value[0] & code & _ONCE:  # a second one of a kind: its value now, explicitly
            value.extend(expand(code, e))
        else:
            value[0] += code
        if extra is not None:
            value.append(extra)
        return effect_count(value[0]) + len(value) - 1 <= MAX_EFFECTS

    def pin(self, task_id: str, e: Entry) -> None:
        """The entry's runtime or exception type may change: keep the held ones explicitly."""
        value = self.held.get(task_id)
        if value is None:
            return
        code, rest = (value, []) if value.__class__ is int else (value[0], value[1:])
        if code & _PINNED:
            self.held[task_id] = [code & ~_PINNED, *rest, *expand(code & _PINNED, e)]

    def restore(self, task_id: str, e: Entry, effects: list[Effect], now: float) -> None:
        """Hold effects read back from saved state, with a fresh grace (explicitly: the
        restored entry has no runtime or exception type to derive them from)."""
        if effects and task_id not in self.held:
            self.held[task_id] = [0, *effects[:MAX_EFFECTS]]
            self._queue(task_id, e, now)

    def take(self, task_id: str, e: Entry) -> list[Effect]:
        """The effects held for this id (none if it holds none), no longer held."""
        value = self.held.pop(task_id, None)
        if value is None:
            return []
        if self._churn.deleted():
            self.held = dict(self.held)
        return expand(value, e)

    def effects(self, task_id: str, e: Entry) -> list[Effect]:
        value = self.held.get(task_id)
        return [] if value is None else expand(value, e)

    def due(self, now: float) -> list[str]:
        """Ids whose grace has ended, oldest first (still held: the caller takes them)."""
        out: list[str] = []
        at, ids, entries, head = self.at, self.ids, self.entries, self._head
        while ids and at[head] <= now:
            head += 1
            task_id = ids.popleft()
            if entries.popleft().seen & HELD:
                out.append(task_id)
        self._head = head
        self.next_at = at[head] if ids else math.inf
        if head > 4096 and 2 * head > len(at):
            self._cut()
        return out

    def over(self) -> list[str]:
        """The oldest ids beyond the bound (still held: the caller takes them)."""
        out: list[str] = []
        excess = len(self.held) - self.limit
        at, ids, entries, head = self.at, self.ids, self.entries, self._head
        while excess > 0 and ids:
            head += 1
            task_id = ids.popleft()
            if entries.popleft().seen & HELD:
                out.append(task_id)
                excess -= 1
        self._head = head
        self.next_at = at[head] if ids else math.inf
        if head > 4096 and 2 * head > len(at):
            self._cut()
        return out

    def _cut(self) -> None:
        """Drop the popped deadlines from the front of the array."""
        del self.at[: self._head]
        self._head = 0

    def _compact(self) -> None:
        kept = [
            item
            for item in zip(self.at[self._head :], self.ids, self.entries, strict=True)
            if item[2].seen & HELD
        ]
        self.at = array("d", [k[0] for k in kept])
        self._head = 0
        self.ids.clear()
        self.entries.clear()
        self.ids.extend(k[1] for k in kept)
        self.entries.extend(k[2] for k in kept)
        self.next_at = self.at[0] if kept else math.inf
