"""The total decoder of what the fix-it store reads back from Redis: plans, recorded outcomes
and audit entries. It never raises.

The plan store lives in the result-backend Redis, which other clients can write: a key of ours
may hold a value an older version wrote, a half-written one, or anything at all. A stored plan
is used only when every part is what `Plan` holds (the approval runs its actions, so nothing
is guessed): `read_plan` returns the `Plan` or a reason (`INVALID_JSON`, `NOT_A_PLAN`). An
outcome that does not decode is `None` (the store shows it as unreadable in its place), and an
audit entry always decodes, its unreadable parts as empty; a retry claim always decodes
(`read_claim`). Text is cleaned by `decode.clean`
(no control characters, bounded), times must be finite and within what `datetime` holds,
nesting is bounded before anything walks it, and documents are bounded in size.
"""

from __future__ import annotations

import json
from typing import Any, TypeGuard

from exporter.decode.clean import depth_within, finite, in_range, label, text
from exporter.remediation.plan import Action, Plan, RetryClaim, Skipped

INVALID_JSON = "invalid_json"
NOT_A_PLAN = "not_a_plan"
MAX_PLAN_BYTES = 16 * 1024 * 1024  # far above a plan of 200 retries with their arguments
MAX_ITEM_BYTES = 64 * 1024  # one outcome or one audit entry's detail
MAX_DEPTH = 64  # replay arguments nest no deeper than the records decoder kept them
ACTION_KINDS = frozenset({"retry", "revoke", "purge", "run_entry"})
MAX_TARGET = 2000  # a task id, a queue name, or SOURCE/ENTRY@DUE (entry names up to 400)
STATUSES = frozenset({"pending", "executing", "executed", "interrupted", "denied"})
OUTCOMES = frozenset({"ok", "error", "skipped", "unknown"})


class _Bad(Exception):
    """Raised inside this module only: the value is not a plan."""


def read_plan(raw: Any) -> Plan | str:
    """A stored plan, or the reason it is not one (`INVALID_JSON`, `NOT_A_PLAN`)."""
    data = _load(raw, MAX_PLAN_BYTES)
    if data is _INVALID:
        return INVALID_JSON
    try:
        return _plan(data)
    except _Bad:
        return NOT_A_PLAN


def read_outcome(raw: Any) -> dict[str, Any] | None:
    """One recorded outcome of an action, or None when it is not one."""
    data = _load(raw, MAX_ITEM_BYTES)
    try:
        return _outcome(data)
    except _Bad:
        return None


def read_audit(entry_id: Any, fields: Any) -> dict[str, Any]:
    """One audit stream entry as the API shows it; parts that do not decode are empty."""
    f = {_text(k): _text(v) for k, v in fields.items()} if isinstance(fields, dict) else {}
    detail = _load(f.get("detail") or "{}", MAX_ITEM_BYTES)
    try:
        at = float(f.get("at") or 0)
    except ValueError:
        at = 0.0
    return {
        "id": _text(entry_id),
        "event": label(f.get("event"), 100) or "",
        "at": in_range(finite(at)) or 0.0,
        "principal": label(f.get("principal"), 300) or "",
        "plan_id": label(f.get("plan_id"), 100),
        "detail": _cleaned(detail) if isinstance(detail, dict) else {},
    }


def read_claim(raw: Any) -> RetryClaim:
    """Who claimed a failure's replay. A value that is not a claim (an older version wrote the
    bare plan id) means sent by that plan."""
    data = _load(raw, MAX_ITEM_BYTES)
    if not isinstance(data, dict):
        return RetryClaim(plan_id=label(_text(raw)[:MAX_TARGET], MAX_TARGET) or "")
    index, new = data.get("index"), data.get("new")
    return RetryClaim(
        plan_id=label(data.get("plan"), MAX_TARGET) or "",
        index=index if isinstance(index, int) and not isinstance(index, bool) else None,
        new_task_id=label(new, MAX_TARGET),
        state="sending" if data.get("state") == "sending" else "sent",
    )


_INVALID = object()


def _load(raw: Any, limit: int) -> Any:
    if isinstance(raw, bytes | bytearray):
        if len(raw) > limit:
            return _INVALID
        raw = bytes(raw).decode("utf-8", "replace")
    if not isinstance(raw, str) or len(raw) > limit:
        return _INVALID
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return _INVALID
    return data if depth_within(data, MAX_DEPTH) else _INVALID


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def _plan(data: Any) -> Plan:
    d = _dict(data)
    actions, skipped = d.get("actions", []), d.get("skipped", [])
    outcomes = d.get("outcomes", [])
    if not (isinstance(actions, list) and isinstance(skipped, list)):
        raise _Bad
    if not isinstance(outcomes, list):
        raise _Bad
    status = d.get("status", "pending")
    if not _one_of(status, STATUSES):
        raise _Bad
    return Plan(
        id=_str(d.get("id"), 100),
        mode=_str(d.get("mode"), 100),
        created_at=_time(d.get("created_at")),
        expires_at=_time(d.get("expires_at")),
        proposed_by=_str(d.get("proposed_by"), 300),
        actions=[_action(a) for a in actions],
        skipped=[_skipped(s) for s in skipped],
        digest=_str(d.get("digest"), 128),
        status=status,
        decided_by=_opt(d.get("decided_by"), 300),
        decided_at=_opt_time(d.get("decided_at")),
        comment=_opt_text(d.get("comment"), 500),
        outcomes=[_outcome(o) for o in outcomes],
        interrupted_at=_opt_time(d.get("interrupted_at")),
    )


def _action(data: Any) -> Action:
    d = _dict(data)
    kind = d.get("kind")
    if not _one_of(kind, ACTION_KINDS):
        raise _Bad
    args, kwargs, options = d.get("args"), d.get("kwargs"), d.get("options")
    if not (args is None or isinstance(args, list)) or not (
        kwargs is None or isinstance(kwargs, dict)
    ):
        raise _Bad
    if not (options is None or isinstance(options, dict)):
        raise _Bad
    return Action(
        kind=kind,
        target=_str(d.get("target"), MAX_TARGET),
        description=_text_field(d.get("description")),
        reason=_text_field(d.get("reason")),
        task_name=_opt(d.get("task_name"), 300),
        queue=_opt(d.get("queue"), 300),
        args=args,
        kwargs=kwargs,
        root_id=_opt(d.get("root_id"), 300),
        overrides=_opt(d.get("overrides"), 300),
        options=_cleaned(options) if options is not None else None,
    )


def _skipped(data: Any) -> Skipped:
    d = _dict(data)
    return Skipped(
        task_id=_str(d.get("task_id"), MAX_TARGET),
        task_name=_opt(d.get("task_name"), 300),
        reason=_text_field(d.get("reason")),
        fix=_opt_text(d.get("fix"), 2000),
    )


def _outcome(data: Any) -> dict[str, Any]:
    d = _dict(data)
    index = d.get("index")
    if index.__class__ is not int or not 0 <= index < 1_000_000:
        raise _Bad
    if not _one_of(d.get("outcome"), OUTCOMES):
        raise _Bad
    return {
        "index": index,
        "action": _str(d.get("action"), 100),
        "target": _str(d.get("target"), MAX_TARGET),
        "outcome": d["outcome"],
        "new_task_id": _opt(d.get("new_task_id"), 300),
        "detail": _opt_text(d.get("detail"), 2000),
        "error": _opt_text(d.get("error"), 2000),
    }


def _one_of(value: Any, allowed: frozenset[str]) -> TypeGuard[str]:
    return value.__class__ is str and value in allowed


def _cleaned(value: Any, depth: int = 0) -> Any:
    """A decoded JSON value with every string cleaned and non-finite numbers as None."""
    cls = value.__class__
    if cls is str:
        return text(value) or ""
    if cls is float:
        return finite(value)
    if cls is list:
        return [_cleaned(v, depth + 1) for v in value] if depth < MAX_DEPTH else None
    if cls is dict:
        if depth >= MAX_DEPTH:
            return None
        return {text(k, 200) or "": _cleaned(v, depth + 1) for k, v in value.items()}
    return value


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad
    return value


def _str(value: Any, limit: int) -> str:
    cleaned = label(value, limit)
    if cleaned is None:
        raise _Bad
    return cleaned


def _opt(value: Any, limit: int) -> str | None:
    if value is None or value == "":
        return value
    return _str(value, limit)


def _text_field(value: Any) -> str:
    if value == "":
        return ""
    cleaned = text(value)
    if cleaned is None:
        raise _Bad
    return cleaned


def _opt_text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    cleaned = text(value, limit)
    if cleaned is None and value != "":
        raise _Bad
    return cleaned or ""


def _time(value: Any) -> float:
    when = in_range(finite(value))
    if when is None:
        raise _Bad
    return when


def _opt_time(value: Any) -> float | None:
    return None if value is None else _time(value)
