"""`ColdStore`: packed records of cold entries, without a string or a dict slot per id.

Most of a full ledger is settled tasks packed into `bytes` records (packed.py). Kept as dict
items they still cost a 96 B id string, a dict slot and a deque slot each: 19.2 + 7.7 +
1.7 MB of a 1M-result reconcile's 93.8 MB (bench/RESULTS.md, "Cold entries without
strings"). Here a record carries its own id (a canonical UUID as 16 bytes, any other id as
its UTF-8 text) and its key, and the store is:

- a ring of records, oldest packed first: `pop_oldest` is how the ledger evicts, so the
  ring is the eviction order of settled entries (records leave the warm window in the order
  their ids arrived, fold.add);
- an open-addressed table of the keys' low 32 bits (the key is `hash(id)` cut to 60 bits,
  the one evicted.py remembers ids by) and ring positions, 8 bytes a slot, sized for the
  ledger's bound at most 55% full, linear probing, deletion by backward shift (no
  tombstones to sweep).

A lookup that finds the key's bits compares the stored id, so two ids alike in those bits
are still two entries. Python's string hash is keyed per process, so no outsider can aim
ids at one probe chain. Nothing here locks: the ledger calls it under its own lock.

A record is the packed one (packed.py), then its id and key (stored_id.py; an id over 255
bytes is not stored: its entry stays an object). A record taken out (`take`) leaves a hole
in the ring that `pop_oldest` skips, and holes are closed (`compact`) when the fold finds
them outnumbering the records.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator

from exporter.ledger.evicted import KEY_MASK
from exporter.ledger.stored_id import id_of, id_tail, key_of

_POS = _LOW = 0xFFFFFFFF  # ring positions are kept modulo 2^32 (the ring is far shorter)
# Table slots per record the store is sized for: at most 55% full (a miss probes ~2.5 slots;
# at 70% it was ~5.6 and a 1M-result reconcile pass took 40% longer than with a dict).
_SLOTS_PER_RECORD = 1.8
_MIN_TABLE = 1024


class ColdStore:
    """Records by id. `live` is how many it holds, `counts` and `mask` its counting
    filter: no stored record's id has `counts[(hash(id) >> 32) & mask] == 0`, so most
    lookups of ids it does not hold end after one byte (read them, never set them)."""

    __slots__ = (
        "_base",
        "_grow_at",
        "_head",
        "_keys",
        "_pos",
        "_ring",
        "_slots",
        "counts",
        "live",
        "mask",
    )

    def __init__(self, expected: int = 0) -> None:
        """`expected`: how many records it will hold at most (the table is sized for them
        at once; it grows if that is passed)."""
        self._slots = 0
        self._keys = self._pos = array("I")
        self._grow_at = 0
        # Records by position; `_base` is the position of `_ring[0]`, `_head` the index of
        # the oldest (the ones before it are gone: trimmed in batches).
        self._ring: list[bytes | None] = []
        self._base = 0
        self._head = 0
        self.live = 0
        self._resize(max(_MIN_TABLE, int(expected * _SLOTS_PER_RECORD)))
        # How many records have each value of the key's bits 32 and up (a counting
        # filter: 0 means none, so most ids not stored are told in one byte read;
        # counts stop at 255 and then never go down). 2 counters per record.
        size = 1 << max(10, (2 * expected - 1).bit_length())
        self.counts = bytearray(size)
        self.mask = size - 1

    def __len__(self) -> int:
        return self.live

    def __contains__(self, task_id: str) -> bool:
        return self.has(task_id)

    def has(self, task_id: str) -> bool:
        """`task_id in store`, as a method: the `in` operator reaches a Python method
        through a C slot, which costs twice the probe (callgrind)."""
        return self._find(task_id) >= 0

    def get(self, task_id: str) -> bytes | None:
        i = self._find(task_id)
        return None if i < 0 else self._ring[(self._pos[i] - self._base) & _POS]

    def ids(self) -> Iterator[str]:
        """Every stored id, oldest first."""
        for record in self._ring[self._head :]:
            if record is not None:
                yield id_of(record)

    def tail(self) -> int:
        """The position the next record will have (positions wrap at 2^32)."""
        return (self._base + len(self._ring)) & _POS

    def before(self, position: int) -> bool:
        """Whether the oldest record was stored before `position` (False: none is)."""
        ring, head = self._ring, self._head
        if not self.live:
            return False
        while ring[head] is None:
            head += 1
        self._head = head
        return 0 < ((position - self._base - head) & _POS) < 1 << 31

    def put(self, task_id: str, packed: bytes) -> bool:
        """Store a packed record under a new id. False: this id cannot be stored here."""
        key = hash(task_id) & KEY_MASK
        k = key & _LOW
        tail = id_tail(task_id, key)
        if tail is None or not k:  # (0 marks a free slot: 1 id in 2^32 stays an object)
            return False
        if self.live >= self._grow_at:
            self._resize(self._slots * 2)
        counts, j = self.counts, (key >> 32) & self.mask
        if counts[j] < 255:
            counts[j] += 1
        ring = self._ring
        self._place(k, (self._base + len(ring)) & _POS)
        ring.append(packed + tail)
        self.live += 1
        return True

    def take(self, task_id: str) -> bytes | None:
        """Remove the record of this id and return it (None: not stored)."""
        i = self._find(task_id)
        if i < 0:
            return None
        at = (self._pos[i] - self._base) & _POS
        record = self._ring[at]
        self._ring[at] = None  # (a hole pop_oldest skips)
        self._drop(i, hash(task_id) & KEY_MASK)
        return record

    def pop_oldest(self) -> bytes:
        """Remove the oldest record and return it (the store must not be empty)."""
        ring, head = self._ring, self._head
        record = ring[head]
        while record is None:
            head += 1
            record = ring[head]
        ring[head] = None
        position = (self._base + head) & _POS
        head += 1
        if head >= 4096 and head * 16 >= len(ring):
            del ring[:head]  # (one move of the rest, once per 16th of the ring: ~10 ns a pop)
            self._base = (self._base + head) & _POS
            head = 0
        self._head = head
        keys, pos, slots = self._keys, self._pos, self._slots
        key = key_of(record)
        k = key & _LOW
        i = k % slots
        while keys[i] != k or pos[i] != position:
            i += 1
            if i == slots:
                i = 0
        self._drop(i, key)
        return record

    def holes(self) -> int:
        """Ring slots left by `take` that eviction has not yet passed."""
        return len(self._ring) - self._head - self.live

    def compact(self) -> Callable[[int], int]:
        """Close the ring's holes (positions change; the table is rebuilt). Returns what an
        old position becomes: the new position of the first record stored at or after it,
        so a stamp from `tail` keeps its place among the records."""
        ring, head, base = self._ring, self._head, self._base
        kept = [at - head for at in range(head, len(ring)) if ring[at] is not None]
        self._ring = [ring[head + at] for at in kept]
        self._base = new_base = (base + head) & _POS
        self._head = 0
        self._resize(self._slots)

        def remap(position: int) -> int:
            at = (position - new_base) & _POS
            if at >= 1 << 31:
                return position  # (older than every record: stays older)
            return (new_base + bisect_left(kept, at)) & _POS

        return remap

    def _find(self, task_id: str) -> int:
        """The table slot of this id, or -1."""
        h = hash(task_id)
        if not self.counts[(h >> 32) & self.mask]:
            return -1
        k = h & _LOW
        keys, slots = self._keys, self._slots
        i = k % slots
        while True:
            found = keys[i]
            if not found:
                return -1
            if found == k:
                record = self._ring[(self._pos[i] - self._base) & _POS]
                if record is not None and id_of(record) == task_id:
                    return i
            i += 1
            if i == slots:
                i = 0

    def _drop(self, i: int, key: int) -> None:
        """Forget the record of `key` at slot i: its count in the filter, and the slot,
        moving back the entries after it that probed past it."""
        self.live -= 1
        counts, c = self.counts, (key >> 32) & self.mask
        if counts[c] < 255:  # (a full count never goes down)
            counts[c] -= 1
        keys, pos, slots = self._keys, self._pos, self._slots
        j = i
        while True:
            j += 1
            if j == slots:
                j = 0
            k = keys[j]
            if not k:
                break
            home = k % slots
            # The entry at j may move to i unless its home lies cyclically in (i, j].
            if (home <= i < j) or (i < j < home) or (j < home <= i):
                keys[i] = k
                pos[i] = pos[j]
                i = j
        keys[i] = 0

    def _resize(self, slots: int) -> None:
        self._keys = array("I", bytes(4 * slots))
        self._pos = array("I", bytes(4 * slots))
        self._slots = slots
        self._grow_at = int(slots / _SLOTS_PER_RECORD)
        base, ring = self._base, self._ring
        for at in range(self._head, len(ring)):
            record = ring[at]
            if record is not None:
                self._place(key_of(record) & _LOW, (base + at) & _POS)

    def _place(self, k: int, position: int) -> None:
        """Put key bits `k` and a ring position in the first free slot from k's home."""
        keys, slots = self._keys, self._slots
        i = k % slots
        while keys[i]:
            i += 1
            if i == slots:
                i = 0
        keys[i] = k
        self._pos[i] = position
