"""Turn ledger records, backend records and plans into API models; filter and page task lists.

Everything shown about a task passes through here, so the rules live in one place: args and
kwargs only with --show-task-args (non-finite numbers shown as null, since JSON has none),
error messages truncated, times as UTC datetimes (a time `datetime` cannot hold is shown as
unknown, never an error). Backend records arrive decoded and cleaned by
`exporter.decode.records`, the decoder the ledger's sources use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from exporter.api.models import TASK_ID_PATTERN, ActionOut, OutcomeOut, PlanOut, SkippedOut, TaskOut
from exporter.config import Config
from exporter.decode import clean
from exporter.remediation.plan import Plan
from exporter.taskdata import FAILURE, RETRY, REVOKED, TaskRecord, TaskUpdate

ERROR_MAX = 300


def ts(value: float | None) -> datetime | None:
    """An epoch as a UTC datetime; None when unknown or outside what datetime can hold."""
    if not value or clean.in_range(value) is None:
        return None
    return datetime.fromtimestamp(value, timezone.utc)


def utc(value: float) -> datetime:
    """Like `ts` for times that are always known; out of range reads as the nearest bound."""
    if not clean.MIN_EPOCH <= value <= clean.MAX_EPOCH:
        value = clean.MAX_EPOCH if value > 0 else clean.MIN_EPOCH
    return datetime.fromtimestamp(value, timezone.utc)


def shown(value: Any, depth: int = 0) -> Any:
    """Args/kwargs as JSON can carry them: non-finite numbers as None, nesting bounded."""
    cls = value.__class__
    if cls is float:
        return value if math.isfinite(value) else None
    if cls is list or cls is tuple:
        return None if depth >= clean.MAX_DEPTH else [shown(v, depth + 1) for v in value]
    if cls is dict:
        if depth >= clean.MAX_DEPTH:
            return None
        return {clean.text(str(k), 1000) or "": shown(v, depth + 1) for k, v in value.items()}
    if cls is str:
        return clean.text(value, 100_000) or value
    return value


def display_name(name: str | None) -> str:
    """'proj.billing.tasks.send_invoice_email' -> 'Send invoice email'."""
    if not name:
        return "Unknown task"
    last = name.rsplit(".", 1)[-1].replace("_", " ").replace("-", " ").strip()
    return (last[:1].upper() + last[1:]) if last else name


def truncate(text: str | None, limit: int = ERROR_MAX) -> str | None:
    if text is None:
        return None
    text = clean.text(str(text), limit + 1) or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def human_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _describe(
    status: str,
    name: str,
    worker: str | None,
    duration: float | None,
    exc: str | None,
    err: str | None,
    retries: int,
) -> str:
    where = f" on {worker}" if worker else ""
    took = f" after {human_seconds(duration)}" if duration is not None else ""
    if status == "SUCCESS":
        text = f"{name} succeeded{where}{took}."
    elif status == FAILURE:
        why = f" with {exc}" + (f": {err}" if err else "") if exc else ""
        text = f"{name} failed{where}{took}{why}."
    elif status == "RETRY":
        text = f"{name} raised {exc or 'an error'} and is scheduled to retry{where}."
    elif status == "REVOKED":
        text = f"{name} was revoked{where}."
    elif status == "STARTED":
        text = f"{name} is running{where}."
    else:
        text = f"{name} is {status.lower()}{where}."
    return text + (f" Retried {retries} time(s) by Celery." if retries else "")


def _duration(rec: TaskRecord) -> float | None:
    if rec.runtime is not None:
        return rec.runtime
    if rec.started_at and rec.finished_at and rec.finished_at >= rec.started_at:
        return rec.finished_at - rec.started_at
    return None


def task_from_record(rec: TaskRecord, config: Config) -> TaskOut:
    dn = display_name(rec.name)
    duration = _duration(rec)
    err = truncate(rec.exception_message)
    return TaskOut(
        id=rec.task_id,
        name=rec.name,
        display_name=dn,
        name_label=rec.name_label,
        status=rec.state,
        description=_describe(
            rec.state, dn, rec.worker, duration, rec.exception_type, err, rec.retries
        ),
        queue=rec.queue,
        worker=rec.worker,
        retries=rec.retries,
        sent_at=ts(rec.sent_at),
        started_at=ts(rec.started_at),
        completed_at=ts(rec.finished_at),
        duration_seconds=duration,
        exception_type=rec.exception_type,
        error=err,
        parent_id=rec.parent_id,
        retryable=bool(rec.args_complete and rec.name),
        args=shown(rec.args) if config.show_task_args else None,
        kwargs=shown(rec.kwargs) if config.show_task_args else None,
        source="ledger",
    )


def task_from_backend(task_id: str, rec: TaskUpdate, config: Config) -> TaskOut:
    """A backend record, as `exporter.decode.records.read_record` decoded and cleaned it."""
    shows_error = rec.state in (FAILURE, RETRY, REVOKED)
    exc = rec.exception_type if shows_error else None
    err = truncate(rec.exception_message) if shows_error else None
    dn = display_name(rec.name)
    retries = rec.retries or 0
    return TaskOut(
        id=task_id,
        name=rec.name,
        display_name=dn,
        status=rec.state,
        description=_describe(rec.state, dn, rec.worker, None, exc, err, retries),
        queue=rec.queue,
        worker=rec.worker,
        retries=retries,
        completed_at=ts(rec.timestamp),
        exception_type=exc,
        error=err,
        parent_id=rec.parent_id,
        retryable=rec.args_complete and bool(rec.name),
        args=shown(rec.args) if config.show_task_args else None,
        kwargs=shown(rec.kwargs) if config.show_task_args else None,
        source="backend",
    )


# -- filtering and paging --------------------------------------------------------------------
CURSOR_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,9})?_" + TASK_ID_PATTERN[1:]


def encode_cursor(rec: TaskRecord) -> str:
    """`<updated_at>_<task id>` of the last item returned: the next page starts after it."""
    return f"{rec.updated_at or 0.0:.6f}_{rec.task_id}"


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(updated_at, task_id) from a cursor; ValueError when malformed."""
    at, sep, task_id = cursor.partition("_")
    try:
        if not sep or not task_id:
            raise ValueError(cursor)
        return float(at), task_id
    except ValueError as exc:
        raise ValueError("cursor must be <updated_at>_<task id>, as next_cursor gives") from exc


def passes(
    rec: TaskRecord,
    at: float,
    name: str | None,
    queue: str | None,
    worker: str | None,
    since: float | None,
    until: float | None,
) -> bool:
    """Whether a record passes every filter but status (the browser counts by status)."""
    if name and name != rec.name and name != rec.name_label:  # a name or its label
        return False
    if (queue and rec.queue != queue) or (worker and rec.worker != worker):
        return False
    return not ((since is not None and at < since) or (until is not None and at > until))


def filter_records(
    records: Iterable[TaskRecord],
    *,
    status: str | None,
    name: str | None,
    queue: str | None,
    worker: str | None,
    since: float | None,
    until: float | None,
    after: tuple[float, str] | None,
    limit: int,
) -> tuple[list[TaskRecord], bool]:
    """Records matching every filter, newest first, past `after`; and whether more remain."""
    out: list[TaskRecord] = []
    for rec in records:
        at = rec.updated_at or 0.0
        # Compared at the cursor's precision (microseconds), as sorted: with the raw time a
        # task just past a cursor rounded up came again on the next page.
        if after is not None and (round(at, 6), rec.task_id) >= after:
            continue
        if status and rec.state != status.upper():
            continue
        if not passes(rec, at, name, queue, worker, since, until):
            continue
        if len(out) == limit:
            return out, True
        out.append(rec)
    return out, False


def sort_newest_first(records: list[TaskRecord]) -> list[TaskRecord]:
    # The id breaks ties so the cursor order is total; times at the cursor's precision.
    return sorted(records, key=lambda r: (round(r.updated_at or 0.0, 6), r.task_id), reverse=True)


# -- plans -----------------------------------------------------------------------------------
def plan_out(plan: Plan, now: float, config: Config) -> PlanOut:
    show = config.show_task_args
    return PlanOut(
        id=plan.id,
        status=plan.status_at(now),  # type: ignore[arg-type]
        mode=plan.mode,
        created_at=utc(plan.created_at),
        expires_at=utc(plan.expires_at),
        proposed_by=plan.proposed_by,
        digest=plan.digest,
        actions=[
            ActionOut(
                index=i,
                action=a.kind,  # type: ignore[arg-type]
                target=a.target,
                task_name=a.task_name,
                queue=a.queue,
                description=a.description,
                reason=a.reason,
                args=a.args if show else None,
                kwargs=a.kwargs if show else None,
                options=_options(a.options, show),
            )
            for i, a in enumerate(plan.actions)
        ],
        not_actionable=[
            SkippedOut(task_id=s.task_id, task_name=s.task_name, reason=s.reason, fix=s.fix)
            for s in plan.skipped
        ],
        decided_by=plan.decided_by,
        decided_at=ts(plan.decided_at),
        comment=plan.comment,
        outcomes=[OutcomeOut(**o) for o in plan.outcomes],
        interrupted_at=ts(plan.interrupted_at),
        not_run=_not_run(plan),
    )


def _options(options: dict[str, Any] | None, show: bool) -> dict[str, Any] | None:
    if options is None or show:
        return options
    return {k: v for k, v in options.items() if k != "headers"}


def _not_run(plan: Plan) -> list[int]:
    if plan.status != "interrupted":
        return []
    ran = {o.get("index") for o in plan.outcomes}
    return [i for i in range(len(plan.actions)) if i not in ran]
