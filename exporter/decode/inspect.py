"""The total decoder of inspect replies: what workers answered, as the poller may trust it.

Any process on the broker can answer a broadcast, so a reply is hostile until decoded, like a
result or an event. `clean_reply` never raises and returns a reply of the shape the poller
reads, with every part checked:
- hosts (the reply's keys) and queue and task names are clean labels (`clean.label`);
- `stats` per host is a dict; `stats.pool` a dict; `stats.total` maps clean task names to
  non-negative ints (booleans, floats, huge or negative numbers dropped);
- `active_queues` per host is a list of dicts with a clean `name`;
- `active`/`reserved`/`scheduled` per host are lists; each request keeps a clean `id`,
  `name`, `delivery_info.routing_key`, `hostname`, and a finite `time_start`;
- what does not fit is dropped, and the count of what was dropped is returned so the caller
  can say so. Lists are bounded per host (`MAX_ITEMS`).
"""

from __future__ import annotations

from typing import Any

from exporter.cluster import InspectReply
from exporter.decode.clean import finite, label

MAX_ITEMS = 10_000  # requests or queues kept per host and method
_TASK_LISTS = ("active", "reserved", "scheduled")


def clean_reply(reply: InspectReply) -> tuple[InspectReply, int]:
    """(the cleaned reply, how many parts were dropped)."""
    dropped = [0]
    out: dict[str, dict[str, Any]] = {}
    for method, per_host in reply.replies.items():
        if per_host is None:
            continue
        if not isinstance(per_host, dict):
            dropped[0] += 1
            continue
        hosts: dict[str, Any] = {}
        for raw_host, value in per_host.items():
            host = label(raw_host, 255)
            if host is None:
                dropped[0] += 1
                continue
            hosts[host] = _value(method, value, dropped)
        out[method] = hosts
    return InspectReply(out, reply.unanswered), dropped[0]


def _value(method: str, value: Any, dropped: list[int]) -> Any:
    if method == "stats":
        return _stats(value, dropped)
    if method == "active_queues":
        return [{"name": n} for n in _names(value, dropped)]
    if method in _TASK_LISTS:
        if not isinstance(value, list):
            dropped[0] += 1 if value is not None else 0
            return None if value is None else []
        tasks = []
        for item in value[:MAX_ITEMS]:
            # scheduled() wraps the request: {"eta": ..., "request": {...}}
            request = item.get("request") if isinstance(item, dict) and "request" in item else item
            task = _request(request)
            if task is None:
                dropped[0] += 1
            else:
                tasks.append(task)
        return tasks
    return None  # a method the poller does not read


def _stats(value: Any, dropped: list[int]) -> dict[str, Any]:
    if not isinstance(value, dict):
        dropped[0] += 1
        return {}
    out: dict[str, Any] = {}
    pool = value.get("pool")
    if isinstance(pool, dict):
        clean_pool: dict[str, Any] = {}
        concurrency = pool.get("max-concurrency")
        if _count(concurrency) is not None:
            clean_pool["max-concurrency"] = concurrency
        processes = pool.get("processes")
        if isinstance(processes, list):
            clean_pool["processes"] = processes[:MAX_ITEMS]
        out["pool"] = clean_pool
    total = value.get("total")
    if isinstance(total, dict):
        clean_total: dict[str, int] = {}
        for name, count in list(total.items())[:MAX_ITEMS]:
            key, n = label(name), _count(count)
            if key is None or n is None:
                dropped[0] += 1
            else:
                clean_total[key] = n
        out["total"] = clean_total
    return out


def _names(value: Any, dropped: list[int]) -> list[str]:
    if not isinstance(value, list):
        dropped[0] += 1 if value is not None else 0
        return []
    names = []
    for q in value[:MAX_ITEMS]:
        name = label(q.get("name")) if isinstance(q, dict) else None
        if name is None:
            dropped[0] += 1
        else:
            names.append(name)
    return names


def _request(request: Any) -> dict[str, Any] | None:
    if not isinstance(request, dict):
        return None
    task_id = label(request.get("id"), 255)
    if task_id is None:
        return None
    delivery = request.get("delivery_info")
    routing_key = label(delivery.get("routing_key")) if isinstance(delivery, dict) else None
    start = finite(request.get("time_start"))
    return {
        "id": task_id,
        "name": label(request.get("name")),
        "hostname": label(request.get("hostname"), 255),
        "delivery_info": {"routing_key": routing_key},
        "time_start": float(start) if start is not None else None,
    }


def _count(value: Any) -> int | None:
    if value.__class__ is int and 0 <= value < 2**53:
        return int(value)
    return None
