"""The one decoder of a Celery result record (a Redis backend value): a `TaskUpdate` or a
skip reason, never an exception.

Every consumer reads results through here: the pub/sub source and reconcile
(`parse_result`, counted states only), the API's backend fallback and the fix-it planner
(`read_record`, any state). Only JSON is ever decoded. Pickle (and any other serializer) is
recognised by its first bytes and skipped with a reason, never loaded. Every field is
type-checked and cleaned by `decode.clean` (valid Unicode, no control characters in labels,
bounded lengths, dates `datetime` can hold); nesting is bounded before anything walks or
prints it: orjson refuses documents deeper than 1,024, exception text is printed to depth
`clean.MAX_DEPTH`, and arguments nested deeper than ARGS_DEPTH are not kept (the task is
then not retryable). Results written by other Celery versions, other apps or hostile
clients must not crash a source, and a bad record is skipped alone.

Speed matters here: a reconcile of a million stored results runs every one through
`parse_result`. orjson decodes; the stdlib decoder is used only where its answer could differ
(values orjson rejects, such as NaN or a lone surrogate, and kept arguments or exception text
holding a run of 19+ digits, since orjson turns integers beyond 64 bits into floats), so the
outcome is the stdlib's. Dates go through the C `datetime.fromisoformat`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from exporter.decode.clean import bounded_str, epoch, label, text
from exporter.taskdata import (
    FAILURE,
    REJECTED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    TRACEBACK_MAX,
    UPDATE_DEFAULTS,
    TaskUpdate,
    update_from,
)

KEY_PREFIX = "celery-task-meta-"
COUNTED_STATES = frozenset({STARTED, RETRY, SUCCESS, FAILURE, REVOKED, REJECTED})
MAX_TEXT = 2000

# Skip reasons, as label values of celery_exporter_results_skipped_total{reason}.
PICKLE = "pickle"
NOT_JSON = "not_json"
INVALID_JSON = "invalid_json"
NOT_A_RESULT = "not_a_result"
OTHER_STATE = "other_state"
BAD_KEY = "bad_key"
_PICKLE0_OPENERS = frozenset(bytes([c]) for c in b"(c]}SVILFNdlpg")
UNKNOWN = "UNKNOWN"  # read_record's state of a record without a status string
PARSE_ERRORS = frozenset({INVALID_JSON, NOT_A_RESULT})
# orjson reads an integer beyond 64 bits as a float (json.loads keeps it exact); every such
# float is at least this large. Smaller floats and all ints are decoded alike by both.
_BIG = float(2**63)
# Arguments nested deeper than this are not kept (not retryable). Not measured against real
# apps: a bound far beyond plain task data, and far below what a recursive walk survives.
ARGS_DEPTH = 64


def task_id_from_key(key: str | bytes, prefix: str) -> str | None:
    """`<prefix>celery-task-meta-<id>` -> id, or None when the key is not a result of ours."""
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    head = prefix + KEY_PREFIX
    if not key.startswith(head):
        return None
    task_id = key[len(head) :]
    # A longer prefix of another app (e.g. "app1:x" vs "app1:") would leave a ':' behind.
    if not task_id or len(task_id) > 255:
        return None
    return task_id


def task_ids_from_keys(keys: list[Any], prefix: str) -> list[str | None]:
    """`task_id_from_key` of each key, without a call per key for ours (SCAN's bytes)."""
    head = prefix + KEY_PREFIX
    bhead = head.encode()
    skip = len(bhead)
    out: list[str | None] = []
    append = out.append
    for key in keys:
        if key.__class__ is bytes and key.startswith(bhead):
            # The head is whole UTF-8 characters, so what follows decodes as it would in the
            # whole key.
            task_id = key[skip:].decode("utf-8", "replace")
            append(task_id if 0 < len(task_id) <= 255 else None)
        else:
            append(task_id_from_key(key, prefix))
    return out


def sniff(raw: bytes) -> str | None:
    """A skip reason for content that is not JSON, judged on the first bytes only."""
    first = raw[:1]
    # Protocol 2+ pickles open with PROTO (0x80); protocol 0/1 with an opcode such as MARK or
    # GLOBAL, and every pickle ends with STOP (".").
    if first == b"\x80" or (first in _PICKLE0_OPENERS and raw.rstrip()[-1:] == b"."):
        return PICKLE
    if raw.lstrip()[:1] != b"{":
        return NOT_JSON
    return None


def parse_result(raw: bytes | str, task_id: str, source: str) -> TaskUpdate | str:
    """The update a stored result means, or the reason it was skipped (counted states only)."""
    return _decode(raw, task_id, source, True)


def read_record(raw: bytes | str, task_id: str, source: str = "backend") -> TaskUpdate | str:
    """A result record of any state (PENDING included), as the API and the planner show it,
    or the reason it cannot be read."""
    return _decode(raw, task_id, source, False)


def _decode(raw: bytes | str, task_id: str, source: str, counted: bool) -> TaskUpdate | str:
    if raw.__class__ is not bytes:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass")
        elif isinstance(raw, bytearray | memoryview):
            raw = bytes(raw)
        else:
            return NOT_JSON
    # A result record opens with "{", which no pickle does: only other content is sniffed.
    if raw[:1] != b"{":
        reason = sniff(raw) if raw else NOT_JSON
        if reason:
            return reason
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError:
        meta = _stdlib_loads(raw)  # what the stdlib accepts and orjson does not (NaN, ...)
        if meta is _INVALID:
            return INVALID_JSON
    if meta.__class__ is not dict:
        return NOT_A_RESULT
    status = meta.get("status")
    if status.__class__ is not str:
        if counted:
            return NOT_A_RESULT
        status = UNKNOWN  # the API still shows what else the record says
    if status not in COUNTED_STATES:
        if counted:
            return OTHER_STATE
        status = label(status, 50) or UNKNOWN
    fast = dict(UPDATE_DEFAULTS)
    fast["task_id"] = task_id
    fast["state"] = status
    fast["source"] = source
    fast["timestamp"] = epoch(meta.get("date_done"))
    for field in ("name", "queue", "worker"):
        value = meta.get(field)
        if value.__class__ is str and value:
            # clean labels (the usual case) pass two C checks; others are cleaned
            if len(value) > 500 or not (value.isascii() and value.isprintable()):
                value = label(value)
            fast[field] = value
    retries = meta.get("retries")
    if retries.__class__ is int and 0 <= retries < 1_000_000:  # bool is not int here
        fast["retries"] = retries
    fast["parent_id"] = label(meta.get("parent_id"), 255)
    if status != SUCCESS or not counted:
        big, deep = _walk(meta)
        if big and not deep:
            exact = _stdlib_loads(raw)  # exact integers in what is kept: arguments, messages
            if isinstance(exact, dict):
                meta = exact
        result = meta.get("result")
        if status in (FAILURE, RETRY, REVOKED) and isinstance(result, dict):
            fast["exception_type"] = label(result.get("exc_type"), 200)
            fast["exception_message"] = _message(result.get("exc_message"))
            fast["traceback"] = text(meta.get("traceback"), TRACEBACK_MAX)
        if "args" in meta and "kwargs" in meta and not deep:
            # Arguments are kept only where a replay may need them, so successes cost none.
            fast["args"] = meta.get("args")
            fast["kwargs"] = meta.get("kwargs")
            fast["args_complete"] = True
        fast["root_id"] = label(meta.get("root_id"), 255)
    return update_from(fast)


_INVALID = object()


def _walk(meta: dict[str, Any]) -> tuple[bool, bool]:
    """What a non-success record keeps (result, args, kwargs): whether it holds a float orjson
    may have made of an integer beyond 64 bits, and whether it nests deeper than ARGS_DEPTH.
    Iterative (only containers are stacked), and far cheaper than decoding again."""
    big = False
    stack: list[tuple[Any, int]] = [(meta, 0)]
    first = True
    while stack:
        value, depth = stack.pop()
        if first:  # the record itself: only these three fields are kept
            children: Any = (meta.get("result"), meta.get("args"), meta.get("kwargs"))
            first = False
        else:
            children = value if value.__class__ is list else value.values()
        for child in children:
            cls = child.__class__
            if cls is float:
                if not -_BIG < child < _BIG:
                    big = True
            elif cls is list or cls is dict:
                if depth >= ARGS_DEPTH:
                    return big, True
                stack.append((child, depth + 1))
    return big, False


def _stdlib_loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return _INVALID


def _message(value: Any) -> str | None:
    # Celery stores exc_message as a list of the exception's args; older ones as a string.
    if value is None:
        return None
    if value.__class__ is str:
        return text(value, MAX_TEXT)
    if value.__class__ is list:
        joined = ", ".join(bounded_str(v, MAX_TEXT) for v in value[:20])
        return text(joined, MAX_TEXT)
    return text(bounded_str(value, MAX_TEXT), MAX_TEXT)
