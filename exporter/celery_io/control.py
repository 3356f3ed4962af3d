"""Remote control for approved remediation: re-send a task, revoke and terminate, purge a queue.

Only the executor calls these, and only for actions of an approved plan. Each call returns
plain data describing what happened, or raises; the executor records either in the audit.
"""

from __future__ import annotations

from typing import Any

from kombu.exceptions import OperationalError

from exporter.celery_io import CeleryIO

RETRY_OF_HEADER = "celery_ops_exporter_retry_of"
PLAN_HEADER = "celery_ops_exporter_plan"


def send_retry(
    io: CeleryIO,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    queue: str,
    original_id: str,
    root_id: str | None,
    plan_id: str,
    task_id: str | None = None,
) -> str:
    """Send `name(*args, **kwargs)` to `queue` as a new task whose parent is the original.

    The new task's parent_id is the failed task (the result backend stores it with
    result_extended), and a header names the original and the plan, for the worker's logs.
    `task_id` is the new task's id when the caller chose it before sending.
    """
    result = io.app.send_task(
        name,
        args=args,
        kwargs=kwargs,
        task_id=task_id,
        queue=queue,
        parent_id=original_id,
        root_id=root_id or original_id,
        headers={RETRY_OF_HEADER: original_id, PLAN_HEADER: plan_id},
    )
    return str(result.id)


ENTRY_HEADER = "celery_ops_exporter_beat_entry"


def send_entry(
    io: CeleryIO,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    options: dict[str, Any],
    entry: str,
    plan_id: str,
    task_id: str,
) -> str:
    """Send a beat entry's task now, as beat does (`send_task(name, args, kwargs,
    **options)`) with the entry's routing options (queue, exchange, routing_key, priority,
    headers), under the task id chosen before the send. Headers name the entry and the plan;
    beat's own `celery_beat_task` header is not set: beat did not send it."""
    opts = {k: v for k, v in options.items() if v is not None and k != "headers"}
    headers = {**(options.get("headers") or {}), ENTRY_HEADER: entry, PLAN_HEADER: plan_id}
    result = io.app.send_task(
        name, args=args, kwargs=kwargs, task_id=task_id, headers=headers, **opts
    )
    return str(result.id)


def revoke_terminate(
    io: CeleryIO, task_id: str, timeout: float = 1.0, expected: int | None = None
) -> list[dict[str, Any]]:
    """Revoke with terminate=True; the workers' replies (empty: nobody answered in time).

    With `expected` (the workers known to be up) the wait ends as soon as they all replied.
    """
    replies = io.app.control.revoke(
        task_id, terminate=True, signal="SIGTERM", reply=True, timeout=timeout, limit=expected
    )
    return list(replies or [])


def purge_queue(io: CeleryIO, queue: str) -> int:
    """Delete every waiting message of `queue` (all priority sub-queues on Redis)."""
    with io.app.connection_for_write() as conn:
        channel = conn.default_channel
        try:
            return int(channel.queue_purge(queue) or 0)
        finally:
            channel.close()


def is_broker_unreachable(exc: BaseException) -> bool:
    """True when the broker could not be reached at all (not a refusal of one action)."""
    return isinstance(exc, OperationalError | ConnectionError | TimeoutError)
