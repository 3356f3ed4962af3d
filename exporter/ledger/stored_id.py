"""How a stored cold record carries its task id and key (cold.py keeps the records).

After the packed record (packed.py) come the id, the key (`hash(id)` cut to 60 bits,
evicted.key) as `<q`, and one byte: 0 when the id is a canonical UUID, kept as its 16
bytes, else the length of the id's UTF-8 text (surrogates kept), at most 255. A UUID in
16 bytes is what keeps a reconciled result's record in pymalloc's 80 B class: as text it
would be 112 B.
"""

from __future__ import annotations

from binascii import Error as BinasciiError
from binascii import a2b_hex
from struct import Struct

_TAIL = Struct("<qB")  # key, id code
_UUID_TAIL = Struct("<16sqB")  # a UUID's 16 bytes, key, 0


def id_tail(task_id: str, key: int) -> bytes | None:
    """What follows the packed record: the id, its key and its code (0: a UUID in 16
    bytes, else the length of its UTF-8 text), or None: too long to store."""
    if (
        len(task_id) == 36
        and task_id[8] == "-"
        and task_id[13] == "-"
        and task_id[18] == "-"
        and task_id[23] == "-"
    ):
        # Canonical (the form id_of writes back) when the 32 others are lowercase hex
        # digits and reads back as they were (no capitals: a2b_hex takes those too).
        # (A regex took 1.5x as long, str.islower 2x.)
        digits = task_id.replace("-", "")
        if len(digits) == 32:
            try:
                raw = a2b_hex(digits)
            except BinasciiError:
                raw = b""
            if raw.hex() == digits:
                return _UUID_TAIL.pack(raw, key, 0)
    raw = task_id.encode("utf-8", "surrogatepass")
    if not 0 < len(raw) < 256:
        return None
    return raw + _TAIL.pack(key, len(raw))


def id_of(record: bytes) -> str:
    """The task id a stored record carries."""
    code = record[-1]
    if code == 0:
        h = record[-25:-9].hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return record[-9 - code : -9].decode("utf-8", "surrogatepass")


def key_of(record: bytes) -> int:
    """The key a stored record carries."""
    k: int = _TAIL.unpack_from(record, len(record) - 9)[0]
    return k


def packed_len(record: bytes) -> int:
    """The length of the packed record inside a stored one."""
    code = record[-1]
    return len(record) - 9 - (code or 16)
