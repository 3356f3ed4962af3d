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
  the one evicted.py remembers ids by) and ring positions, 8 bytes a slot, at most 70% full,
  linear probing, deletion by backward shift (no tombstones to sweep).

A lookup that finds the key's bits compares the stored id, so two ids alike in those bits
are still two entries. Python's string hash is keyed per process, so no outsider can aim ids at one
probe chain. Nothing here locks: the ledger calls it under its own lock.

A record is the packed one (packed.py), then the id, the key (`<q`) and one byte: 0 for a
UUID, else the id's length in bytes (an id over 255 bytes is not stored: its entry stays an
object). A record taken out (`take`) leaves a hole in the ring that `pop_oldest` skips.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator
from struct import Struct

from exporter.ledger.evicted import KEY_MASK

_TAIL = Struct("<qB")  # key, id code
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch
_POS = _LOW = 0xFFFFFFFF  # ring positions are kept modulo 2^32 (the ring is far shorter)
_MIN_TABLE = 1024


def _raw_id(task_id: str) -> tuple[bytes, int] | None:
    """The id as stored and its code (0: a UUID in 16 bytes), or None: too long to store."""
    if len(task_id) == 36 and _UUID(task_id):
        return bytes.fromhex(task_id.replace("-", "")), 0
    raw = task_id.encode("utf-8", "surrogatepass")
    if not 0 < len(raw) < 256:
        return None
    return raw, len(raw)


def id_of(record: bytes) -> str:
    """The task id a stored record carries."""
    code = record[-1]
    if code == 0:
        h = record[-25:-9].hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return record[-9 - code : -9].decode("utf-8", "surrogatepass")


def key_of(record: bytes) -> int:
    k: int = _TAIL.unpack_from(record, len(record) - 9)[0]
    return k


def packed_len(record: bytes) -> int:
    """The length of the packed record inside a stored one."""
    code = record[-1]
    return len(record) - 9 - (code or 16)


class ColdStore:
    __slots__ = ("_base", "_head", "_keys", "_live", "_mask", "_pos", "_ring")

    def __init__(self) -> None:
        self._keys = array("I", bytes(4 * _MIN_TABLE))  # a key's low 32 bits; 0: a free slot
        self._pos = array("I", bytes(4 * _MIN_TABLE))
        self._mask = _MIN_TABLE - 1
        # Records by position; `_base` is the position of `_ring[0]`, `_head` the index of
        # the oldest (the ones before it are gone: trimmed in batches).
        self._ring: list[bytes | None] = []
        self._base = 0
        self._head = 0
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def __contains__(self, task_id: object) -> bool:
        return isinstance(task_id, str) and self._find(task_id) >= 0

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
        if not self._live:
            return False
        while ring[head] is None:
            head += 1
        self._head = head
        return 0 < ((position - self._base - head) & _POS) < 1 << 31

    def put(self, task_id: str, packed: bytes) -> bool:
        """Store a packed record under a new id. False: this id cannot be stored here."""
        raw = _raw_id(task_id)
        key = hash(task_id) & KEY_MASK
        k = key & _LOW
        if raw is None or not k:  # (0 marks a free slot: 1 id in 2^32 stays an object)
            return False
        if (self._live + 1) * 10 > (self._mask + 1) * 7:
            self._grow()
        keys, mask = self._keys, self._mask
        i = k & mask
        while keys[i]:
            i = (i + 1) & mask
        keys[i] = k
        ring = self._ring
        self._pos[i] = (self._base + len(ring)) & _POS
        ring.append(packed + raw[0] + _TAIL.pack(key, raw[1]))
        self._live += 1
        return True

    def take(self, task_id: str) -> bytes | None:
        """Remove the record of this id and return it (None: not stored)."""
        i = self._find(task_id)
        if i < 0:
            return None
        at = (self._pos[i] - self._base) & _POS
        record = self._ring[at]
        self._ring[at] = None  # (a hole pop_oldest skips)
        self._delete(i)
        self._live -= 1
        return record

    def pop_oldest(self) -> bytes:
        """Remove the oldest record and return it (the store must not be empty)."""
        ring, head = self._ring, self._head
        while ring[head] is None:
            head += 1
        record = ring[head]
        assert record is not None
        ring[head] = None
        position = (self._base + head) & _POS
        head += 1
        if head >= 4096 and head * 16 >= len(ring):
            del ring[:head]  # (one move of the rest, once per 16th of the ring: ~10 ns a pop)
            self._base = (self._base + head) & _POS
            head = 0
        self._head = head
        keys, pos, mask = self._keys, self._pos, self._mask
        k = key_of(record) & _LOW
        i = k & mask
        while keys[i] != k or pos[i] != position:
            i = (i + 1) & mask
        self._delete(i)
        self._live -= 1
        return record

    def _find(self, task_id: str) -> int:
        """The table slot of this id, or -1."""
        k = hash(task_id) & _LOW
        keys, mask = self._keys, self._mask
        i = k & mask
        while True:
            found = keys[i]
            if found == k:
                record = self._ring[(self._pos[i] - self._base) & _POS]
                if record is not None and id_of(record) == task_id:
                    return i
            elif not found:
                return -1
            i = (i + 1) & mask

    def _delete(self, i: int) -> None:
        """Free slot i, moving back the entries after it that probed past it."""
        keys, pos, mask = self._keys, self._pos, self._mask
        j = i
        while True:
            j = (j + 1) & mask
            k = keys[j]
            if not k:
                break
            home = k & mask
            # The entry at j may move to i unless its home lies cyclically in (i, j].
            if (home <= i < j) or (i < j < home) or (j < home <= i):
                keys[i], pos[i] = k, pos[j]
                i = j
        keys[i] = 0

    def _grow(self) -> None:
        size = (self._mask + 1) * 2
        keys = self._keys = array("I", bytes(4 * size))
        pos = self._pos = array("I", bytes(4 * size))
        mask = self._mask = size - 1
        base, ring = self._base, self._ring
        for at in range(self._head, len(ring)):
            record = ring[at]
            if record is not None:
                k = key_of(record) & _LOW
                i = k & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = k
                pos[i] = (base + at) & _POS
