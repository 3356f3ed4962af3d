"""What "run this beat entry now" sends: the entry's task name, arguments and routing options,
read from the schedule store when a fix-it plan is proposed (never kept on the board, never
exported). A total decoder: any stored value gives a `RunSpec` or a `NotRunnable` reason.

Beat sends an entry as `send_task(task, args, kwargs, **options)` (celery.beat.Scheduler
.apply_async). Of the options, the routing ones are carried over: queue, exchange,
routing_key, priority and headers; the rest (expires, countdown, ...) are named as left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from exporter.beat import decode

ROUTING = ("queue", "exchange", "routing_key", "priority", "headers")
MAX_ARGS_BYTES = 64 * 1024  # what a plan may carry; a periodic task's arguments are small
MAX_DEPTH = 20


class NotRunnable(Exception):
    """The entry cannot be sent exactly as beat would: `reason` says why, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RunSpec:
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()  # option names not carried over


def _encoded_object(value: Any, depth: int = 0) -> bool:
    """True when a value holds what RedBeat's encoder wrote for a Python object (a datetime,
    a timedelta): `{"__type__": ...}`, which the worker would receive as a plain dict."""
    if depth > MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return "__type__" in value or any(_encoded_object(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_encoded_object(v, depth + 1) for v in value)
    return False


def _options(raw: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    if raw is None:
        return {}, ()
    if not isinstance(raw, dict):
        raise NotRunnable("its options are not a JSON object")
    out: dict[str, Any] = {}
    for key in ("queue", "exchange", "routing_key"):
        if raw.get(key) is not None:
            text = decode.clean(raw[key])
            if text is None:
                raise NotRunnable(f"its option {key} is not a name")
            out[key] = text
    priority = raw.get("priority")
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 255:
            raise NotRunnable("its option priority is not a number from 0 to 255")
        out["priority"] = priority
    headers = raw.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(isinstance(k, str) for k in headers):
            raise NotRunnable("its option headers is not a JSON object")
        out["headers"] = dict(headers)
    dropped = tuple(sorted(str(k)[:50] for k in raw if k not in ROUTING))[:20]
    return out, dropped


def spec(task: Any, args: Any, kwargs: Any, options: Any) -> RunSpec:
    """Validated parts of an entry -> RunSpec; NotRunnable when beat's send cannot be repeated
    exactly."""
    name = decode.clean(task)
    if name is None:
        raise NotRunnable("its task name is missing")
    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise NotRunnable("its args/kwargs are not a JSON list and object")
    if _encoded_object(args) or _encoded_object(kwargs):
        raise NotRunnable(
            "its arguments hold encoded Python objects (a datetime, ...) that only beat "
            "decodes; sending them as they are stored would change them"
        )
    try:
        size = len(orjson.dumps([args, kwargs]))
    except (TypeError, orjson.JSONEncodeError):
        raise NotRunnable("its arguments are not plain JSON") from None
    if size > MAX_ARGS_BYTES:
        raise NotRunnable(f"its arguments are larger than {MAX_ARGS_BYTES // 1024} KiB")
    opts, dropped = _options(options)
    return RunSpec(name, list(args), dict(kwargs), opts, dropped)


def from_json_text(raw: Any) -> Any:
    """Stored JSON text (django-celery-beat's args/kwargs/headers columns) -> value."""
    if raw is None or raw == "":
        return None
    try:
        return decode.load_json(raw)
    except decode.Skip as skip:
        raise NotRunnable(f"a stored field is not JSON ({skip.reason})") from None


def redbeat_spec(definition: Any) -> RunSpec:
    """RedBeat's `definition` field -> RunSpec."""
    if definition is None:
        raise NotRunnable("its entry is no longer in RedBeat's schedule")
    d = from_json_text(definition)
    if not isinstance(d, dict):
        raise NotRunnable("its stored definition is not a JSON object")
    return spec(d.get("task"), d.get("args"), d.get("kwargs"), d.get("options"))


def django_spec(row: Any) -> RunSpec:
    """(task, args, kwargs, queue, exchange, routing_key, priority, headers) -> RunSpec, as
    django-celery-beat's ModelEntry builds its options."""
    if not isinstance(row, tuple | list) or len(row) != 8:
        raise NotRunnable("its row could not be read")
    task, args, kwargs, queue, exchange, routing_key, priority, headers = row
    options: dict[str, Any] = {
        "queue": queue or None,
        "exchange": exchange or None,
        "routing_key": routing_key or None,
        "priority": priority,
    }
    hdrs = from_json_text(headers)
    options["headers"] = hdrs if hdrs else None
    return spec(task, from_json_text(args), from_json_text(kwargs), options)
