"""How the ledger's label-dependent effects reach the counters: attribution with a grace.

The fold (fold.py) decides *that* something counts (de-duplication); this module decides
*under which name and queue*. Each effect (a counter increment, a failure by exception, a
histogram observation, a success-window entry) of an entry whose name or queue is unknown is
held in `PendingLabels` (pending.py) until a source supplies both, or its grace
(--label-grace) ends; it is then applied under the labels known by then: the name or
`unknown` (counted in `PendingLabels.unattributed`), the queue or --default-queue-name. An
entry is held at most once: after its release every later effect applies at once, so a task
whose name never comes is delayed once, not at every state.

Flags live in `Entry.seen` above the state bits: HELD (effects wait in `pending`, which owns
the flag: its queue reads it) and RESOLVED (released once; never held again). Held effects
are codes (pending.py): a runtime or exception type the entry holds is read from it at
release. Functions here work on the ledger's tables and run under the ledger's lock.
`finish` is the label-dependent half of a task's end (exceptions, the success window, the
recent lists).
"""

from __future__ import annotations

from exporter.ledger.entry import SHARED_SEEN, Entry, shared_seen
from exporter.ledger.guard import OTHER
from exporter.ledger.hosts import KINDS as HOST_KINDS
from exporter.ledger.pending import (
    COUNTER_CODE,
    EXCEPTION,
    HELD,
    RUNTIME,
    WIN_FAILED,
    WIN_OK,
    Effect,
    expand,
    retried_code,
)
from exporter.ledger.tables import LedgerTables
from exporter.taskdata import COUNTER_FOR_STATE, FAILURE, SUCCESS

__all__ = ["HELD", "INSPECTED", "RESOLVED"]  # (HELD is pending.py's: its queue reads it)
RESOLVED = 1 << 13
INSPECTED = 1 << 14  # created by inspect, nothing counted yet: to dedup it is still unknown
# Left the warm window unsettled (packed.cool): back into it once settled (`warm_again`).
# Above the source bits: never saved, never in a packed record.
COOL_DUE = 1 << 36
_STATE_OF_COUNTER = {c: s for s, c in COUNTER_FOR_STATE.items()}
# Seconds after a task settles by which every source that names it has spoken: its events
# (a broker drops undelivered ones within seconds: Celery's event_queue_ttl is 5 s, and a
# Redis pub/sub keeps none), inspect (only while it runs), its stored result. A result a
# reconcile finds that settled longer ago than this plus --label-grace is labelled at once
# instead of waiting out the grace: at a first start over 1M stored results, 50,000 of
# them waited (the bound) and the rest were labelled early, each counted as an overflow.
# The same margin as the reconcile watermark's (ledger.RECONCILE_MARGIN), for clock skew.
NAMED_WITHIN = 120.0


# -- effects: applied now, or held while a label is unknown ------------------------------
# Each has a fast path for an entry whose name and queue are known (the common case, as
# cheap as before attribution waited) and goes through `held`/`do` otherwise.
def count(t: LedgerTables, task_id: str, e: Entry, counter: str, now: float, n: int = 1) -> None:
    waits = e.name is None or e.queue is None
    if not waits and e.worker is None and t.hosts is not None:
        waits = counter in HOST_KINDS  # --compat: an outcome waits for its worker too
    if waits:
        if n == 1:
            done = held(t, task_id, e, COUNTER_CODE[counter], now)
        elif counter == "retried":
            done = held(t, task_id, e, retried_code(n), now)
        else:
            done = held(t, task_id, e, 0, now, ("c", counter, n))
        if done:
            return
    # Admitted labels pass unchanged, so the guards are called only for new or folded ones.
    name = e.name if e.name in t.names.values else t.names(e.name)
    queue = e.queue or t.queues.default
    if queue not in t.queues.values:
        queue = t.queues(queue)
    key = (name, queue, counter)
    t.tasks[key] = t.tasks.get(key, 0) + n
    if t.worker_label:
        wkey = (name, queue, counter, t.guards["hostname"](e.worker))
        t.by_worker[wkey] = t.by_worker.get(wkey, 0) + n
    if t.hosts is not None:  # --compat danihodovic
        t.hosts.count(name, queue, e.worker, counter, e.exc_type, n)


def labelled(t: LedgerTables, e: Entry) -> bool:
    """Whether a held entry's effects can apply: its name and queue are known, and with
    --compat danihodovic its worker too. An outcome heard first without a worker (a revoke
    Celery writes to the backend at once, without the request) would count under hostname
    "unknown" where celery-exporter counts its worker's task-revoked: seen 12 of 30 revokes
    in a side-by-side run. A worker that never comes is waited for up to --label-grace."""
    return e.name is not None and e.queue is not None and (e.worker is not None or t.hosts is None)


def finish(t: LedgerTables, task_id: str, e: Entry, state: str, now: float, settled: float) -> None:
    t.running.pop(task_id, None)
    if state == FAILURE:
        t.recent_failed.append(task_id)
    # A result reconcile backfills from hours ago is counted, but is not "recent": it
    # would skew the success ratio of the window (e.g. a whole backend at first start).
    recent = state in (SUCCESS, FAILURE) and settled >= now - t.outcomes.window
    if e.name is None or e.queue is None:
        outcome(t, task_id, e, state == FAILURE, recent, now)  # may wait for labels
    else:
        name = e.name if e.name in t.names.values else t.names(e.name)
        if state == FAILURE:
            key = (name, t.guards["exception"](e.exc_type))
            t.exceptions[key] = t.exceptions.get(key, 0) + 1
        if recent:
            t.outcomes.add(now, name, state == SUCCESS)
    t.recent.append(task_id)


def outcome(
    t: LedgerTables, task_id: str, e: Entry, failed: bool, recent: bool, now: float
) -> None:
    """A success or failure of an entry whose labels are unknown (the known case is
    inline in `finish`): the exception by name, and the window entry."""
    if failed:
        label = t.guards["exception"](e.exc_type)
        if label == e.exc_type:  # (read from the entry at release: pending.py)
            hold_or_do(t, task_id, e, EXCEPTION, now)
        else:
            hold_or_do(t, task_id, e, 0, now, ("x", label, 0))
    if recent:
        hold_or_do(t, task_id, e, WIN_FAILED if failed else WIN_OK, now)


def observed(
    t: LedgerTables, task_id: str, e: Entry, runtime: float | None, wait: float | None, now: float
) -> None:
    """A runtime and/or a queue-wait observation of an entry whose labels are unknown."""
    if runtime is not None:
        if runtime is e.runtime:  # (read from the entry at release: pending.py)
            hold_or_do(t, task_id, e, RUNTIME, now)
        else:  # derived from receive times
            hold_or_do(t, task_id, e, 0, now, ("r", runtime, 0))
    if wait is not None:
        hold_or_do(t, task_id, e, 0, now, ("q", wait, 0))


def hold_or_do(
    t: LedgerTables, task_id: str, e: Entry, code: int, now: float, extra: Effect | None = None
) -> None:
    """Hold one effect (pending.py's code and/or an explicit one), or apply it now."""
    if not held(t, task_id, e, code, now, extra):
        for effect in expand([code, extra] if extra else code, e):
            do(t, e, effect, now)


def name_label(t: LedgerTables, e: Entry) -> str:
    """The same name label as the counter's, without counting the fold a second time."""
    g = t.names
    if e.name in g.values:
        return e.name
    return OTHER if e.name and len(g.values) >= g.limit else g(e.name)


def labels(t: LedgerTables, e: Entry) -> tuple[str, str]:
    return t.names(e.name), t.queues(e.queue or t.queues.default)


def do(t: LedgerTables, e: Entry, effect: Effect, now: float) -> None:
    """Apply one effect under the labels known now (a held one, or with no grace)."""
    kind, a, b = effect
    if kind == "c":
        count(t, "", e, a, now, b)  # released or never held: not held again
    elif kind == "x":
        key = (t.names(e.name), str(a))
        t.exceptions[key] = t.exceptions.get(key, 0) + 1
    elif kind == "w":
        t.outcomes.add(now, name_label(t, e), bool(a))
    elif kind in ("r", "q"):
        t.hists.add(kind == "r", labels(t, e), a, e)


# -- holding and releasing ---------------------------------------------------------------
def held(
    t: LedgerTables, task_id: str, e: Entry, code: int, now: float, extra: Effect | None = None
) -> bool:
    """Hold the effect if the entry's labels may still come. False: apply it now."""
    pending = t.pending
    if not pending.grace or e.seen & RESOLVED:
        return False
    settled = e.settled
    if settled is not None and not e.seen & HELD and settled < now - pending.grace - NAMED_WITHIN:
        # Settled long before it was heard of (a result a reconcile found): every source
        # that names a task has spoken by now, so waiting would only delay its counts.
        e.seen |= RESOLVED
        if e.name is None:
            pending.unattributed += 1
        return False
    if not pending.hold(task_id, e, code, now, extra):
        release(t, task_id, e, now, early=True)  # too many for one task
        return True
    if not e.seen & HELD:
        e.seen |= HELD
        if len(pending.held) > pending.limit:
            for oldest in pending.over():
                # (held: an object, never packed: packed.py)
                release(t, oldest, t.entries[oldest], now, early=True)
    return True


def release(t: LedgerTables, task_id: str, e: Entry, now: float, early: bool = False) -> None:
    """Apply the held effects under the labels known now; the entry is never held again."""
    effects = t.pending.take(task_id, e)  # (before the entry changes: some read it)
    seen = (e.seen & ~HELD) | RESOLVED
    if seen & COOL_DUE:
        seen = warm_again(t, task_id, e, seen)
    e.seen = SHARED_SEEN.get(seen) or shared_seen(seen)
    if early:
        t.pending.early += 1
    if e.name is None:
        t.pending.unattributed += 1
    for effect in effects:
        do(t, e, effect, now)
        if effect[0] == "c" and e.name:
            note_last(t, e, effect[1], now)
    if t.tracking:
        t.dirty.add(task_id)


def warm_again(t: LedgerTables, task_id: str, e: Entry, seen: int) -> int:
    """An entry that left the warm window unsettled may be settled now (released, or
    finished): back into the window, to be packed when it leaves it (packed.py). Returns
    its `seen` without COOL_DUE. Not retried before: 50,000 held ids cycling through the
    window cost the reconcile pass 15% more CPU."""
    t.warm.append(task_id)
    t.warm_entries.append(e)
    return seen & ~COOL_DUE


def note_last(t: LedgerTables, e: Entry, counter: str, now: float) -> None:
    """A held state's last time per task name (beat's join), once its name is known."""
    state = _STATE_OF_COUNTER.get(counter)
    if state is None:
        return
    when = {
        "SENT": e.sent_at,
        "RECEIVED": e.received_at,
        "STARTED": e.started_at,
    }.get(state, e.finished_at)
    t.last.note(name_label(t, e), state, min(when or now, now))


def expire(t: LedgerTables, now: float) -> None:
    """Release every entry whose grace has ended (cheap when none has)."""
    if t.pending.next_at <= now:
        for task_id in t.pending.due(now):
            # (held: an object, never packed: packed.py)
            release(t, task_id, t.entries[task_id], now)
