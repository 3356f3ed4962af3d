"""Settled, cold entries kept packed: one `bytes` record in place of an `Entry` and its floats.

Most of a full ledger is finished tasks that nothing touches again but the API's reads, the
durable save, eviction and a rare late update. Each new entry's id joins the warm window
(`LedgerTables.warm`, the newest `warm_size` ids: 20,000, a tenth of a default ledger, plus
as many as the label-grace store holds: fold.add); the one that falls out of it is packed
if it is settled (a finished state, nothing held for it in pending.py, not created by
inspect alone), its name, queue and worker have numbers in the ledger's `Strings` (bounded
at SHARED_MAX) and its times and runtime are floats. Otherwise it stays an `Entry`, marked
COOL_DUE: when it settles (it finishes, or its held effects are released) it goes back into
the window (attribution.warm_again). Cost (bench/RESULTS.md, "Cold entries packed"): 0.3 us
a pack, +6% instructions per task in a full ledger, +13-15% CPU at 200,000 entries.

A record (`struct`, little-endian): one 64-bit head (`seen`'s 36 bits, then per time field
3 bits: 0 none, k the k-th double below; then the EXTRA flag), name, queue and worker as
16-bit string numbers (NONE: no value), then each distinct time once as a double (equal
values, e.g. finished and updated, share one). A task's 5 distinct values (received,
started, finished, settled, runtime) make 14 + 40 B (the cold store adds the id and its
key: 112 B in all, cold.py); an `Entry` with 4 floats is 256 B. What few tasks have
(`Extra`: failure text, args, retries) waits in `LedgerTables.extras` under the id's key
(evicted.key: a 32 B int where the id's string is 96 B; the record keeps the key).

Packed records live in the ledger's `ColdStore` (cold.py), not in `LedgerTables.entries`:
the store keeps the id in the record, so no id string stays behind. Every reader goes
through here: `lookup` (an entry's object or record), `entry_of` (an `Entry` to read: the
object, or an unpacked copy), `thaw` (the fold's: the entry becomes an object again, back in
the warm window), `settled_of` and `finished` (the durable save, reconcile's settled check:
no unpacking), `forget` (eviction: a record's settle time, and its side data dropped).
Functions run under the ledger's lock.
"""

from __future__ import annotations

from collections import deque
from struct import Struct

from exporter.ledger.attribution import COOL_DUE, HELD, INSPECTED
from exporter.ledger.entry import _NO_EXTRA, PENDING, READY_MASK, Entry, shared_seen
from exporter.ledger.evicted import KEY_MASK
from exporter.ledger.stored_id import key_of, packed_len
from exporter.ledger.tables import COOL_DUE_MIN, LedgerTables

NONE = 0xFFFF  # no name/queue/worker (Strings numbers stay below SHARED_MAX)
_SEEN = (1 << 36) - 1  # SOURCE_SHIFT + MAX_SOURCES bits
_TIMES_AT = 36
_EXTRA = 1 << 57
_NOT_PACKED = HELD | INSPECTED | COOL_DUE
_HEAD = 14  # bytes before the doubles
_RECORDS = tuple(Struct("<QHHH" + "d" * n) for n in range(8))
_SETTLED = Struct("<d")
# (the order of the 3-bit fields in the head; the settle time first: when there is one, it
# is the first double, which eviction reads without decoding the head)
TIMES = (
    "settled",
    "sent_at",
    "received_at",
    "started_at",
    "finished_at",
    "updated_at",
    "runtime",
)
_SETTLED_BITS = 7 << (_TIMES_AT - 32)  # (in the head's fifth byte)


def _code(*fields: int) -> int:
    """The head bits of a shape: for each of TIMES, 0 (none) or its double's number."""
    return sum(k << (_TIMES_AT + 3 * i) for i, k in enumerate(fields))


# The common shapes, packed without the general loop (3.5x faster, 0.3 us): a task heard
# live (received, started, finished = updated, settled, runtime), one a reconcile found
# (finished = updated = settled, the same float), and one whose states came with one time
# object (no timestamps: the batch's `now`, perhaps settled then too; the benches' streams).
_HEARD = _code(1, 0, 2, 3, 4, 4, 5)
_FOUND = _code(1, 0, 0, 0, 1, 1, 0)
_ONE = _code(1, 0, 2, 2, 2, 2, 3)
_ONE_ALL = _code(1, 0, 1, 1, 1, 1, 2)


def pack(t: LedgerTables, task_id: str, e: Entry) -> bytes | None:
    """The record of a settled entry (its `Extra` moved to `t.extras`), or None: keep it."""
    seen = e.seen
    if seen & _NOT_PACKED or not seen & READY_MASK:
        return None
    index = t.strings.index
    name, queue, worker = e.name, e.queue, e.worker
    n = NONE if name is None else index.get(name, -1)
    q = NONE if queue is None else index.get(queue, -1)
    w = NONE if worker is None else index.get(worker, -1)
    if n < 0 or q < 0 or w < 0:
        return None
    head = seen if e.x is _NO_EXTRA else seen | _EXTRA
    rec, fin = e.received_at, e.finished_at
    record = None
    if e.updated_at is fin and e.sent_at is None and fin.__class__ is float:
        sta, settled, rt = e.started_at, e.settled, e.runtime
        if rec is None:
            if settled is fin and sta is None and rt is None:
                record = _RECORDS[1].pack(head | _FOUND, n, q, w, settled)
        elif rec is not sta and (
            float is rec.__class__ is sta.__class__ is settled.__class__ is rt.__class__
        ):
            record = _RECORDS[5].pack(head | _HEARD, n, q, w, settled, rec, sta, fin, rt)
        elif rec is sta is fin and rt.__class__ is float:
            if settled is fin:
                record = _RECORDS[2].pack(head | _ONE_ALL, n, q, w, fin, rt)
            elif settled.__class__ is float:
                record = _RECORDS[3].pack(head | _ONE, n, q, w, settled, fin, rt)
    if record is None:
        record = _pack_any(head, n, q, w, e)
        if record is None:
            return None
    if head & _EXTRA:
        t.extras[hash(task_id) & KEY_MASK] = e.x
    return record


def _pack_any(head: int, n: int, q: int, w: int, e: Entry) -> bytes | None:
    """Any other shape: each distinct time once (by value: 0.0 and -0.0 kept apart)."""
    values: list[float] = []
    at = _TIMES_AT
    for v in (
        e.settled,
        e.sent_at,
        e.received_at,
        e.started_at,
        e.finished_at,
        e.updated_at,
        e.runtime,
    ):
        if v is not None:
            if v.__class__ is not float:
                return None  # (an int runtime read back as a float would differ)
            k = 0
            for d in values:
                k += 1
                if v is d or (v == d and v):  # (0.0 and -0.0 are equal, not the same)
                    break
            else:
                values.append(v)
                k += 1
            head |= k << at
        at += 3
    return _RECORDS[len(values)].pack(head, n, q, w, *values)


def unpack(t: LedgerTables, task_id: str, record: bytes) -> Entry:
    """The entry a record holds (a new object; its `Extra` is the one kept aside)."""
    head, n, q, w, *values = _RECORDS[(packed_len(record) - _HEAD) >> 3].unpack_from(record)
    e = Entry(PENDING)
    e.seen = shared_seen(head & _SEEN)
    strings = t.strings.values
    e.name = None if n == NONE else strings[n]
    e.queue = None if q == NONE else strings[q]
    e.worker = None if w == NONE else strings[w]
    at = _TIMES_AT
    for field in TIMES:
        k = (head >> at) & 7
        if k:
            setattr(e, field, values[k - 1])  # (equal times share one float again)
        at += 3
    if head & _EXTRA:
        e.x = t.extras[hash(task_id) & KEY_MASK]
    return e


def lookup(t: LedgerTables, task_id: str) -> Entry | bytes | None:
    """The entry of an id: its object, its stored record, or None (not known)."""
    e = t.entries.get(task_id)
    return e if e is not None else t.cold.get(task_id)


def ids(t: LedgerTables) -> list[str]:
    """Every id the ledger holds (a packed one's is read back from its record)."""
    return [*t.entries, *t.cold.ids()]


def entry_of(t: LedgerTables, task_id: str, value: Entry | bytes) -> Entry:
    """An entry to read (not to change: an unpacked copy is not kept)."""
    return unpack(t, task_id, value) if isinstance(value, bytes) else value


def thaw(t: LedgerTables, task_id: str) -> Entry | None:
    """A late update for a packed entry: taken out of the store, it is an object again,
    back in the warm window. None: the id is not packed."""
    cold = t.cold
    record = cold.take(task_id)
    if record is None:
        return None
    if cold.holes() > cold.live + COOL_DUE_MIN:
        # Holes in the ring from earlier thaws, more than it holds: closed up, or a ledger
        # that never evicts would keep a slot per thaw. The open entries' eviction turns
        # move with the positions.
        remap = cold.compact()
        t.cool_due = deque((remap(at), i, e) for at, i, e in t.cool_due)
    e = unpack(t, task_id, record)
    if e.x is not _NO_EXTRA:
        del t.extras[hash(task_id) & KEY_MASK]
    t.entries[task_id] = e
    t.warm.append(task_id)
    t.warm_entries.append(e)
    t.thaws += 1
    return e


def settled_of(value: Entry | bytes) -> float | None:
    """The settle time, of either form."""
    if not isinstance(value, bytes):
        return value.settled
    return _SETTLED.unpack_from(value, _HEAD)[0] if value[4] & _SETTLED_BITS else None


def finished(value: Entry | bytes) -> bool:
    """Whether a final state was seen (every record is of a finished task)."""
    return isinstance(value, bytes) or bool(value.seen & READY_MASK)


def forget(t: LedgerTables, record: bytes) -> tuple[float | None, int]:
    """An evicted record: its `Extra`, if any, goes too. Returns its settle time and key."""
    k = key_of(record)
    if record[7] & (_EXTRA >> 56):
        del t.extras[k]
    return _SETTLED.unpack_from(record, _HEAD)[0] if record[4] & _SETTLED_BITS else None, k


def cool(t: LedgerTables) -> None:
    """The oldest id of the warm window leaves it: packed into the cold store if it can be,
    else marked COOL_DUE (a running task, one whose effects wait for labels), which puts it
    back in the window once it settles (attribution.warm_again). Until then its id waits in
    `cool_due`, stamped with the store's tail: its turn for eviction (fold.evict)."""
    task_id = t.warm.popleft()
    e = t.warm_entries.popleft()
    if t.entries.get(task_id) is not e:
        return  # evicted, or packed already (an id added twice), or a later entry of the id
    record = pack(t, task_id, e)
    if record is not None and t.cold.put(task_id, record):
        del t.entries[task_id]
        if t.churn.deleted():
            t.entries = dict(t.entries)  # sized for what it holds (churn.py)
        return
    if record is not None and e.x is not _NO_EXTRA:
        del t.extras[hash(task_id) & KEY_MASK]  # (packed, but its id cannot be stored)
    if not e.seen & COOL_DUE:
        e.seen = shared_seen(e.seen | COOL_DUE)
        due = t.cool_due
        due.append((t.cold.tail(), task_id, e))  # (older than every record stored from here)
        if len(due) > t.cool_due_at:
            _sweep(t)


def _sweep(t: LedgerTables) -> None:
    """Drop from `cool_due` the ids settled (back in the window) or evicted since; it is
    swept again when it has doubled, so each id costs O(1) on average."""
    entries = t.entries
    kept = [(at, i, e) for at, i, e in t.cool_due if entries.get(i) is e and e.seen & COOL_DUE]
    t.cool_due = deque(kept)
    t.cool_due_at = max(COOL_DUE_MIN, 2 * len(kept))
