"""Turns one stored Celery result (Redis backend value) into a `TaskUpdate`, or a skip reason.

Only JSON is ever decoded. Pickle (and any other serializer) is recognised by its first bytes
and skipped with a reason, never loaded. Every field is type-checked: results written by other
Celery versions, other apps or hostile clients must not crash a source.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from exporter.taskstate import (
    FAILURE,
    REJECTED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    TaskUpdate,
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
PARSE_ERRORS = frozenset({INVALID_JSON, NOT_A_RESULT})


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
    """The update a stored result means, or the reason it was skipped."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not raw:
        return NOT_JSON
    reason = sniff(raw)
    if reason:
        return reason
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        return INVALID_JSON
    if not isinstance(meta, dict):
        return NOT_A_RESULT
    status = meta.get("status")
    if not isinstance(status, str):
        return NOT_A_RESULT
    if status not in COUNTED_STATES:
        return OTHER_STATE
    result = meta.get("result")
    exc_type = exc_message = None
    if status in (FAILURE, RETRY, REVOKED) and isinstance(result, dict):
        exc_type = _str(result.get("exc_type"), 200)
        exc_message = _message(result.get("exc_message"))
    retries = meta.get("retries")
    keep_args = status != SUCCESS and "args" in meta and "kwargs" in meta
    return TaskUpdate(
        task_id=task_id,
        state=status,
        source=source,
        timestamp=parse_date(meta.get("date_done")),
        name=_str(meta.get("name"), 500),
        queue=_str(meta.get("queue"), 500),
        worker=_str(meta.get("worker"), 500),
        retries=retries
        if isinstance(retries, int) and not isinstance(retries, bool) and 0 <= retries < 1_000_000
        else None,
        exception_type=exc_type,
        exception_message=exc_message,
        # Arguments are kept only where a replay may need them, so successes cost no memory.
        args=meta.get("args") if keep_args else None,
        kwargs=meta.get("kwargs") if keep_args else None,
        args_complete=keep_args,
        parent_id=_str(meta.get("parent_id"), 255),
    )


def parse_date(value: Any) -> float | None:
    """Celery's ISO `date_done` -> epoch seconds; naive dates are UTC (Celery's default)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _str(value: Any, limit: int) -> str | None:
    if isinstance(value, str) and value:
        return value[:limit]
    return None


def _message(value: Any) -> str | None:
    # Celery stores exc_message as a list of the exception's args; older ones as a string.
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, list):
        return ", ".join(str(v)[:MAX_TEXT] for v in value[:20])[:MAX_TEXT]
    if value is None:
        return None
    return str(value)[:MAX_TEXT]
