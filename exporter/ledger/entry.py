"""One task id's memory inside the ledger: a compact slotted `Entry` and its merge rules.

The ledger may hold hundreds of thousands of these, so states seen are bit masks (one bit per
state, one bit per retry number) instead of sets, and the API's `TaskRecord` is built only
when someone reads it. Nothing mutable here is process-wide: the string interner and the
source bits are per ledger (`Strings`, `SourceBits`, kept in its tables); only the ints of
`seen` are shared (`shared_seen`), as CPython shares small ints.

Per entry at 200,000 (bench/ledger_memory.py --parts): the `Entry` 128 B (12 slots; the
retry counts moved to `Extra`, which few tasks need; state and sources kept in `seen`), its
`seen` int shared. Settled entries out of the warm window are packed (packed.py).
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.taskdata import (
    FAILURE,
    PENDING,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    SENT,
    SOURCE_EVENTS,
    SOURCE_INSPECT,
    SOURCE_PUBSUB,
    SOURCE_RECONCILE,
    STARTED,
    SUCCESS,
    TaskRecord,
    TaskUpdate,
)

BIT = {SENT: 1, RECEIVED: 2, STARTED: 4, SUCCESS: 8, FAILURE: 16, REVOKED: 32, REJECTED: 64}
READY_MASK = 8 | 16 | 32 | 64
STATE_OF_BIT = {v: k for k, v in BIT.items()}
# Later states win over earlier ones when updates arrive out of order.
RANK = {SENT: 0, RECEIVED: 1, STARTED: 2, RETRY: 3, REJECTED: 4, REVOKED: 4, FAILURE: 4, SUCCESS: 4}
MAX_TEXT = 2000  # exception text kept per task, so a multi-megabyte message cannot pile up

KNOWN_SOURCES = (SOURCE_EVENTS, SOURCE_PUBSUB, SOURCE_RECONCILE, SOURCE_INSPECT)
MAX_SOURCES = 16  # bits of `Entry.sources`
# `Entry.seen` holds, from bit 0 up: a bit per state seen and the flags (the 16 bits saved:
# FLAGS_MASK), the current state's code (4 bits), the source bits. Two slots less than
# `state` and `sources` of their own: 128 B an Entry, not 144 (pymalloc sizes in steps of
# 16 B, so one slot less saved nothing).
STATE_SHIFT = 16
SOURCE_SHIFT = 20
FLAGS_MASK = (1 << STATE_SHIFT) - 1
_STATE_MASK = 15 << STATE_SHIFT
_NOT_STATE = ~_STATE_MASK
_BELOW_SOURCES = (1 << SOURCE_SHIFT) - 1
# The states an entry can be in (what the sources' decoders produce); any other is PENDING.
STATE_NAMES = (PENDING, SENT, RECEIVED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED, REJECTED)
_CODE = {state: i << STATE_SHIFT for i, state in enumerate(STATE_NAMES)}
_RANK_OF_CODE = {code: RANK.get(state, 0) for state, code in _CODE.items()}
SHARED_MAX = 20_000


class Strings:
    """One string object per distinct name/queue/worker (each parsed message makes a new
    one), so 200,000 entries do not hold 200,000 copies. Bounded: past the cap, no sharing.
    One per ledger (in its tables), used under the ledger's lock."""

    __slots__ = ("_shared", "index", "values")

    def __init__(self) -> None:
        self._shared: dict[str, str] = {}
        # Each shared string's number, and the strings by number (packed.py's records).
        self.index: dict[str, int] = {}
        self.values: list[str] = []

    def share(self, value: str) -> str:
        shared = self._shared.get(value)
        if shared is not None:
            return shared
        if len(self._shared) < SHARED_MAX:
            self._shared[value] = value
            self.index[value] = len(self.values)
            self.values.append(value)
        return value


class SourceBits:
    """The bit of `Entry.seen` (from SOURCE_SHIFT up: `Entry.sources`) each source name
    gets: the known sources first, then others in the order first seen (up to 16 in all;
    later ones get no bit). One per ledger."""

    __slots__ = ("bits", "names")

    def __init__(self) -> None:
        self.names: list[str] = list(KNOWN_SOURCES)
        # source -> bit; read directly by the fold (`bit` adds the ones not seen before)
        self.bits: dict[str, int] = {s: 1 << (SOURCE_SHIFT + i) for i, s in enumerate(self.names)}

    def bit(self, source: str) -> int:
        bit = self.bits.get(source)
        if bit is not None:
            return bit
        if len(self.names) >= MAX_SOURCES:
            return 0
        self.names.append(source)
        bit = self.bits[source] = 1 << (SOURCE_SHIFT + len(self.names) - 1)
        return bit

    def of(self, mask: int) -> set[str]:
        return {s for i, s in enumerate(self.names) if mask & (1 << (SOURCE_SHIFT + i))}


class Extra:
    """What only some tasks have (failures, replay material, ETA, canvas parent, retries)."""

    __slots__ = (
        "args",
        "args_complete",
        "eta",
        "exc_msg",
        "exc_type",
        "kwargs",
        "parent_id",
        "retries",
        "retry_ev",
        "retry_other",
        "retry_total",
    )

    def __init__(self) -> None:
        self.args: object = None
        self.kwargs: object = None
        self.args_complete = False
        self.exc_type: str | None = None
        self.exc_msg: str | None = None
        self.parent_id: str | None = None
        self.eta: float | None = None
        self.retries = 0  # the attempt's retry number, as the latest source said
        self.retry_total = 0  # retries counted for this task (a proven lower bound)
        self.retry_ev = 0  # unnumbered retries heard from events
        self.retry_other = 0  # unnumbered retries heard from pub/sub


_NO_EXTRA = Extra()
# `Entry.seen` values are a few dozen distinct ints, mostly above the 256 CPython caches:
# one object per value instead of one per entry saves 32 B an entry (6.4 MB at 200,000).
SHARED_SEEN: dict[int, int] = {}


def shared_seen(value: int) -> int:
    """The one int object for this `seen` value (any int is correct; this one is shared)."""
    return SHARED_SEEN.get(value) or SHARED_SEEN.setdefault(value, value)


_RUNTIME_DONE = 1 << 10  # flag bits kept in `seen` above the state bits
_WAIT_DONE = 1 << 11


class Entry:
    __slots__ = (
        "finished_at",
        "name",
        "queue",
        "received_at",
        "runtime",
        "seen",
        "sent_at",
        "settled",
        "started_at",
        "updated_at",
        "worker",
        "x",
    )

    def __init__(self, state: str) -> None:
        # BIT per state seen, the _DONE flags, the state's code and the sources (see above)
        self.seen = _CODE.get(state, 0)
        self.name: str | None = None
        self.queue: str | None = None
        self.worker: str | None = None
        self.sent_at: float | None = None
        self.received_at: float | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.updated_at: float | None = None
        self.runtime: float | None = None
        self.settled: float | None = None
        self.x: Extra = _NO_EXTRA  # shared empty one until a field is set: saves memory

    def extra(self) -> Extra:
        if self.x is _NO_EXTRA:
            self.x = Extra()
        return self.x

    @property
    def state(self) -> str:
        """The latest state by RANK (ties: the latest heard)."""
        return STATE_NAMES[(self.seen & _STATE_MASK) >> STATE_SHIFT]

    @state.setter
    def state(self, value: str) -> None:
        self.seen = (self.seen & ~_STATE_MASK) | _CODE.get(value, 0)

    @property
    def sources(self) -> int:
        """The `SourceBits` bits of the sources that reported this task."""
        return self.seen & ~_BELOW_SOURCES

    # Read-only views of the rarely set fields.
    eta = property(lambda self: self.x.eta)
    exc_type = property(lambda self: self.x.exc_type)
    exc_msg = property(lambda self: self.x.exc_msg)
    args = property(lambda self: self.x.args)
    kwargs = property(lambda self: self.x.kwargs)
    args_complete = property(lambda self: self.x.args_complete)
    parent_id = property(lambda self: self.x.parent_id)
    retries = property(lambda self: self.x.retries)
    retry_total = property(lambda self: self.x.retry_total)
    retry_ev = property(lambda self: self.x.retry_ev)
    retry_other = property(lambda self: self.x.retry_other)

    def set_retries(self, total: int, ev: int, other: int) -> None:
        """The retry counts (saved state); the shared empty `Extra` stays empty for zeros."""
        if total or ev or other or self.x is not _NO_EXTRA:
            x = self.extra()
            x.retry_total, x.retry_ev, x.retry_other = total, ev, other

    @property
    def runtime_done(self) -> bool:
        return bool(self.seen & _RUNTIME_DONE)

    @runtime_done.setter
    def runtime_done(self, value: bool) -> None:
        self.seen = self.seen | _RUNTIME_DONE if value else self.seen & ~_RUNTIME_DONE

    @property
    def wait_done(self) -> bool:
        return bool(self.seen & _WAIT_DONE)

    @wait_done.setter
    def wait_done(self, value: bool) -> None:
        self.seen = self.seen | _WAIT_DONE if value else self.seen & ~_WAIT_DONE

    def merge(self, u: TaskUpdate, now: float, sbit: int, share: Callable[[str], str]) -> None:
        """Fold one update into this entry; `share` interns name/queue/worker strings."""
        ts = u.timestamp if u.timestamp is not None else now
        state = u.state
        code = _CODE.get(state, 0)
        seen = self.seen | sbit
        if _RANK_OF_CODE[code] >= _RANK_OF_CODE[seen & _STATE_MASK]:
            seen = seen & _NOT_STATE | code
            self.updated_at = ts
        self.seen = seen
        if u.name is not None:
            self.name = share(u.name)
        if u.queue is not None:
            self.queue = share(u.queue)
        if u.worker is not None:
            self.worker = share(u.worker)
        if u.parent_id is not None:
            self.extra().parent_id = u.parent_id
        if u.exception_type is not None:
            self.extra().exc_type = share(u.exception_type)  # (one object per type)
        if u.exception_message is not None:
            self.extra().exc_msg = u.exception_message[:MAX_TEXT]
        if u.eta is not None:
            self.extra().eta = u.eta
        if u.args_complete or (u.args is not None and not self.x.args_complete):
            x = self.extra()
            x.args, x.kwargs, x.args_complete = u.args, u.kwargs, u.args_complete
        retries = u.retries
        # (0 is what the shared empty Extra says already: no Extra made for it)
        if (
            retries is not None
            and (state in (RECEIVED, STARTED) or retries > self.x.retries)
            and (retries or self.x is not _NO_EXTRA)
        ):
            self.extra().retries = retries
        if u.runtime is not None:
            self.runtime = u.runtime
        if state == SENT:
            self.sent_at = self.sent_at or ts
        elif state == RECEIVED:
            self.received_at = self.received_at or ts
        elif state == STARTED:
            self.started_at = ts
        elif state in (SUCCESS, FAILURE, REVOKED, REJECTED):
            self.finished_at = ts


def record_of(task_id: str, e: Entry, sources: SourceBits) -> TaskRecord:
    """The API's view of an entry (a fresh object; the caller may keep it)."""
    return TaskRecord(
        task_id=task_id,
        state=e.state,
        name=e.name,
        queue=e.queue,
        worker=e.worker,
        sent_at=e.sent_at,
        received_at=e.received_at,
        started_at=e.started_at,
        finished_at=e.finished_at,
        updated_at=e.updated_at,
        runtime=e.runtime,
        retries=e.retries,
        exception_type=e.exc_type,
        exception_message=e.exc_msg,
        args=e.args,
        kwargs=e.kwargs,
        args_complete=e.args_complete,
        parent_id=e.parent_id,
        sources=sources.of(e.sources),
    )
