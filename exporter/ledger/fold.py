"""The ledger's write side: one `TaskUpdate` folded into the tables, counted at most once.

It owns de-duplication (a state of a task id counts once, whichever source reported it; a
retry counts once per retry number), eviction (first in, first out, in the order entries
left the warm window: tables.py), and what inspect teaches about running tasks. Each new
entry joins the warm window and pushes the oldest out to be packed (packed.py); an update of
a packed entry thaws it first. Which name and queue a count goes under, and when, is
attribution.py's. Functions here work on the ledger's tables and run under the ledger's
lock.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.ledger.attribution import (
    COOL_DUE,
    HELD,
    INSPECTED,
    count,
    finish,
    labelled,
    name_label,
    observed,
    release,
    warm_again,
)
from exporter.ledger.entry import (
    BIT,
    READY_MASK,
    SHARED_SEEN,
    Entry,
    shared_seen,
)
from exporter.ledger.evicted import KEY_MASK
from exporter.ledger.guard import UNKNOWN
from exporter.ledger.histograms import LabelFn
from exporter.ledger.packed import cool, forget, thaw
from exporter.ledger.stored_id import id_of
from exporter.ledger.tables import LedgerTables
from exporter.taskdata import (
    COUNTER_FOR_STATE,
    RECEIVED,
    RETRY,
    SENT,
    SOURCE_EVENTS,
    SOURCE_INSPECT,
    SOURCE_RECONCILE,
    STARTED,
    TaskUpdate,
)

# A hostile or corrupt result cannot add more retries than this in one update.
MAX_RETRY_STEP = 1000


def apply(t: LedgerTables, u: TaskUpdate, now: float, labels: LabelFn) -> bool:
    """Fold one update in (`labels` names an entry's histogram row). True: it counted."""
    task_id = u.task_id
    state = u.state
    bit = BIT.get(state, 0)
    # Reconcile dates a result by its date_done; live sources settle it when heard.
    backfill = u.source == SOURCE_RECONCILE
    settle = u.timestamp if backfill and u.timestamp else now
    e = t.entries.get(task_id)
    if e is None:
        e = thaw(t, task_id)  # a late update of a packed entry (else None: a new id)
    if e is None or e.seen & INSPECTED:  # (an entry only inspect knows is as new)
        # Only a backfill can be stale: a live message is news, however late it is.
        if (
            backfill
            and bit & READY_MASK
            and (settle <= t.watermark or hash(task_id) & KEY_MASK in t.evicted.keys)
        ):
            t.below_watermark += 1
            return False
        if backfill and not bit & READY_MASK and t.evictions:
            # An unfinished task we no longer know may be one we evicted: its retries
            # were counted then, and counting them again would be wrong.
            return False
        if e is None:
            e = add(t, task_id, Entry(state), now)
        e.seen &= ~INSPECTED
    if e.seen & HELD and (
        (u.runtime is not None and e.runtime is not None)
        or (u.exception_type is not None and e.x.exc_type is not None)
    ):  # (a held runtime or exception type is the entry's: keep it before it changes)
        t.pending.pin(task_id, e)
    sources = t.sources
    e.merge(u, now, sources.bits.get(u.source) or sources.bit(u.source), t.strings.share)
    if e.seen & HELD and labelled(t, e):
        release(t, task_id, e, now)  # this update named the task: apply what waited
    if t.tracking:
        t.dirty.add(task_id)
    counted = False
    if state == RETRY:
        if u.retries is not None:
            floor = u.retries + 1  # result_extended numbers the retry
        elif u.source == SOURCE_EVENTS:
            x = e.extra()
            x.retry_ev += 1  # task-retried has no number: the n-th one heard is >= n
            floor = x.retry_ev
        else:
            x = e.extra()
            x.retry_other += 1
            floor = x.retry_other
        counted = raise_retries(t, task_id, e, floor, now)
    elif bit and not e.seen & bit:
        e.seen |= bit
        counted = True
        if bit & READY_MASK:
            e.settled = settle  # (before its count: attribution.held reads it)
            count(t, task_id, e, COUNTER_FOR_STATE[state], now)
            finish(t, task_id, e, state, now, settle)
        else:
            count(t, task_id, e, COUNTER_FOR_STATE[state], now)
            if state == STARTED and not e.seen & READY_MASK:
                t.running[task_id] = e
        if e.name:  # (held until its name is known otherwise: attribution.release)
            t.last.note(name_label(t, e), state, min(u.timestamp or now, now))
    if u.retries and state != RETRY and state != SENT:
        # Attempt r (received, started or final) means r retries happened before it.
        counted |= raise_retries(t, task_id, e, u.retries, now)
    # Both histograms need a runtime or a start time: a backfilled result has neither.
    if (u.runtime is not None or e.started_at is not None) and not (e.runtime_done and e.wait_done):
        # Labels known: observed at once; else the observations may wait for them.
        known = e.name is not None and e.queue is not None
        runtime, wait = t.hists.observe(e, u.runtime, now, labels if known else None)
        if runtime is not None or wait is not None:
            observed(t, task_id, e, runtime, wait, now)
    seen = e.seen
    # A finished entry stays: its `seen` is one shared int (inline; a held one's is shared
    # when it is released).
    if seen & READY_MASK and not seen & HELD:
        if seen & COOL_DUE:
            seen = warm_again(t, task_id, e, seen)  # settled out of the warm window: pack it
        e.seen = SHARED_SEEN.get(seen) or shared_seen(seen)
    return counted


def add(t: LedgerTables, task_id: str, e: Entry, now: float) -> Entry:
    t.entries[task_id] = e
    warm = t.warm
    warm.append(task_id)
    t.warm_entries.append(e)
    # (as long again as the held ids: they are the newest, and waiting for them to be
    # released first spares a failed try each, a third of the cost in a reconcile pass)
    warm_size = t.warm_size + len(t.pending.held)
    if len(warm) > warm_size:
        cool(t)  # the oldest warm entry is packed if it is settled (packed.py)
        if len(warm) > warm_size:
            cool(t)  # (a second one while late updates or released ids made it longer)
    if len(t.entries) + t.cold.live > t.max_tasks:
        evict(t, now)
    return e


def raise_retries(t: LedgerTables, task_id: str, e: Entry, floor: int, now: float) -> bool:
    """Retries are counted as a lower bound that only grows: max over what each source
    proves (its own count of unnumbered retries, retry numbers, attempt numbers). So the
    same retry heard from events and pub/sub, in any order, counts once."""
    total = e.x.retry_total
    delta = min(floor, total + MAX_RETRY_STEP) - total
    if delta <= 0:
        return False
    e.extra().retry_total = total + delta
    count(t, task_id, e, "retried", now, delta)
    t.recent.append(task_id)
    return True


def evict(t: LedgerTables, now: float) -> None:
    """Forget the oldest entries until the ledger is within its bound: first in, first out
    in the order they left the warm window (tables.py)."""
    cold = t.cold
    for _ in range(len(t.entries) + cold.live - t.max_tasks):
        task_id = _oldest_open(t) if t.cool_due else None
        if task_id is None and cold.live:  # (a packed entry is settled: nothing held, not running)
            record = cold.pop_oldest()
            settled, k = forget(t, record)
            if t.tracking and (
                settled is None or settled > t.persisted_watermark or k in t.evicted.keys
            ):  # (else the last save kept no row of it: durable.export_state)
                t.dirty.add(id_of(record))
        else:
            if task_id is None:
                task_id = _oldest_warm(t)
                if task_id is None:
                    return
            e = t.entries.pop(task_id)
            if e.seen & HELD:
                release(t, task_id, e, now, early=True)  # its effects count before it goes
            t.running.pop(task_id, None)
            settled = e.settled
            k = hash(task_id) & KEY_MASK
            if t.churn.deleted():
                t.entries = dict(t.entries)  # sized for what it holds (churn.py)
            if t.tracking:
                t.dirty.add(task_id)
        t.evictions += 1
        # A counted result a reconcile could find again must stay known as counted.
        if t.backfill and settled is not None and settled > t.watermark:
            t.evicted.add_key(k, settled)


def _oldest_open(t: LedgerTables) -> str | None:
    """The id of the oldest entry that left the window open, if it left before every
    packed record still stored."""
    due, entries = t.cool_due, t.entries
    while due:
        at, task_id, e = due[0]
        if entries.get(task_id) is not e or not e.seen & COOL_DUE:
            due.popleft()  # (settled and back in the window, or gone)
        elif t.cold.before(at):
            return None
        else:
            due.popleft()
            return task_id
    return None


def _oldest_warm(t: LedgerTables) -> str | None:
    """The id of the warm window's oldest entry (nothing older is left)."""
    warm, objects, entries = t.warm, t.warm_entries, t.entries
    while warm:
        task_id = warm.popleft()
        if entries.get(task_id) is objects.popleft():  # (not a later entry of the id)
            return task_id
    return None


def observe_running(
    t: LedgerTables, tasks: Iterable[tuple[str, str, str | None, str, float | None]], now: float
) -> None:
    """Learn (task id, name, queue, worker, started_at) from inspect, without counting;
    effects that waited for this name and queue are applied now. It only ever adds labels."""
    share = t.strings.share
    for task_id, name, queue, worker, started_at in tasks:
        e = t.entries.get(task_id)
        if e is None and task_id in t.cold:
            continue  # packed: finished, nothing held (the case below)
        if e is None:
            # Seen running before any source reported it: its names wait for them.
            e = add(t, task_id, Entry(STARTED if started_at else RECEIVED), now)
            e.seen = shared_seen(e.seen | INSPECTED | t.sources.bit(SOURCE_INSPECT))
            if t.tracking:
                t.dirty.add(task_id)
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
        if e.seen & HELD and labelled(t, e):
            release(t, task_id, e, now)
