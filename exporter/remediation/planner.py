"""The fix-it planner: turns recent failures and stuck tasks into a reviewable plan.

Pure functions over plain data: it reads task records and running tasks handed to it and
returns a `Plan` (see `plan.py`); it never talks to Celery or Redis and never changes anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from exporter.config import Config
from exporter.remediation.plan import (
    DOUBT_HOLD_SECONDS,
    Action,
    Plan,
    RetryClaim,
    Skipped,
    digest_of,
)
from exporter.snapshot import RunningTask
from exporter.stuck import is_stuck
from exporter.taskdata import FAILURE, TaskRecord, TaskUpdate

CONSERVATIVE = "conservative"
BALANCED = "balanced"
GREEDY = "greedy"
MODES = (CONSERVATIVE, BALANCED, GREEDY)
MAX_ACTIONS = 200  # a plan a person can still read; propose again for the rest

# Exceptions that mean "the code or the input is wrong": retrying replays the same failure,
# so no mode retries them automatically (an explicit task id still can).
PERMANENT_EXCEPTIONS = frozenset(
    {
        "ValueError",
        "TypeError",
        "KeyError",
        "IndexError",
        "AttributeError",
        "NameError",
        "AssertionError",
        "NotImplementedError",
        "ZeroDivisionError",
        "ImportError",
        "ModuleNotFoundError",
        "SyntaxError",
        "UnicodeDecodeError",
        "UnicodeEncodeError",
        "NotRegistered",
        "Reject",
        "Ignore",
        "PermissionError",
        "LookupError",
    }
)
RESULT_EXTENDED_FIX = (
    "set result_extended=True in the Celery app (the result backend then keeps the task's "
    "name, args, kwargs and queue), so failures can be replayed exactly"
)


@dataclass(frozen=True)
class Targets:
    task_ids: tuple[str, ...] = ()
    task_name: str | None = None
    purge_queue: str | None = None
    run_entries: tuple[str, ...] = ()  # beat entries to send now (remediation/run_entry.py)

    @property
    def explicit(self) -> bool:
        return bool(self.task_ids or self.task_name or self.purge_queue or self.run_entries)


# Words in a class name that mark a bug or bad input (PermanentError, ValidationError,
# IntegrityError, ...): classed permanent, so no hint ever suggests retrying them by mode.
BUG_LIKE_WORDS = ("Permanent", "Validation", "Invalid", "Integrity", "DoesNotExist", "NotFound")


def classify(exception_type: str | None, config: Config) -> str:
    """transient | permanent | unknown, from the exception's class name."""
    if exception_type and exception_type in config.transient_exceptions:
        return "transient"
    if exception_type and (
        exception_type in PERMANENT_EXCEPTIONS or any(w in exception_type for w in BUG_LIKE_WORDS)
    ):
        return "permanent"
    return "unknown"


# A task's backend record, decoded by exporter.decode.records (None: absent or unreadable).
BackendLookup = Callable[[str], TaskUpdate | None]


def propose(
    *,
    mode: str,
    targets: Targets,
    failures: Iterable[TaskRecord],
    running: Iterable[RunningTask],
    lookup: BackendLookup,
    already_retried: Callable[[Iterable[str]], Mapping[str, RetryClaim]],
    config: Config,
    now: float,
    proposed_by: str,
) -> Plan:
    """A new plan (not yet stored). `failures` are recent failed records, newest first."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    actions: list[Action] = []
    skipped: list[Skipped] = []
    failed = [r for r in failures if r.state == FAILURE]
    by_id = {r.task_id: r for r in failed}
    running_by_id = {t.task_id: t for t in running}
    claims = already_retried([r.task_id for r in failed] + list(targets.task_ids))
    explicit_ids = set(targets.task_ids)

    def add_retry(rec: TaskRecord, reason: str) -> None:
        claim = claims.get(rec.task_id)
        if claim is not None and claim.sent:
            skipped.append(Skipped(rec.task_id, rec.name, "already retried by an earlier plan"))
            return
        if claim is not None and rec.task_id not in explicit_ids:
            skipped.append(_in_doubt(rec, claim))
            return
        action, skip = _retry_action(rec, reason, lookup)
        if action is not None and claim is not None:
            # Asked for by id: the operator takes over the in-doubt claim, knowingly.
            action = replace(
                action,
                overrides=claim.new_task_id,
                description=f"{action.description}; its earlier retry {claim.new_task_id} is "
                "in doubt (the exporter stopped while sending it) and was not seen: approving "
                "sends it once more",
            )
        if action is not None:
            actions.append(action)
        elif skip is not None:
            skipped.append(skip)

    if targets.explicit:
        for task_id in dict.fromkeys(targets.task_ids):
            if task_id in running_by_id:
                actions.append(_revoke_action(running_by_id[task_id], now, "requested by id"))
            elif task_id in by_id:
                add_retry(by_id[task_id], "requested by id")
            else:
                rec = _record_from_backend(task_id, lookup)
                if rec is not None and rec.state == FAILURE:
                    add_retry(rec, "requested by id")
                else:
                    state = rec.state if rec else "unknown to the exporter and the backend"
                    skipped.append(
                        Skipped(
                            task_id,
                            rec.name if rec else None,
                            f"not failed and not running (state: {state})",
                        )
                    )
        if targets.task_name:
            for rec in failed:
                if rec.name == targets.task_name:
                    add_retry(rec, f"failed {targets.task_name} (requested by name)")
        if targets.purge_queue:
            q = targets.purge_queue
            actions.append(
                Action(
                    kind="purge",
                    target=q,
                    queue=q,
                    reason="purge requested explicitly",
                    description=f"delete every message waiting in queue {q!r} (cannot be undone)",
                )
            )
    else:
        allowed = {"transient"} if mode == CONSERVATIVE else {"transient", "unknown"}
        for rec in failed:
            kind = classify(rec.exception_type, config)
            exc = rec.exception_type or "an unknown exception"
            if kind in allowed:
                add_retry(rec, f"failed with {exc} ({kind}; mode {mode})")
            else:
                skipped.append(
                    Skipped(
                        rec.task_id,
                        rec.name,
                        f"failed with {exc} ({kind}): mode {mode} does not retry it",
                        "looks like a bug or bad input: fix that first, then retry it by "
                        "its id (task_ids) if it should run again"
                        if kind == "permanent"
                        else "use mode balanced, or add it to --transient-exceptions",
                    )
                )
        if mode == GREEDY:
            for task in running_by_id.values():
                if is_stuck(task, now, config.stuck_after):
                    actions.append(
                        _revoke_action(
                            task, now, f"running longer than --stuck-after {config.stuck_after:g}s"
                        )
                    )
    if len(actions) > MAX_ACTIONS:
        for extra in actions[MAX_ACTIONS:]:
            skipped.append(
                Skipped(
                    extra.target,
                    extra.task_name,
                    f"plan limited to {MAX_ACTIONS} actions: propose again after",
                )
            )
        actions = actions[:MAX_ACTIONS]
    plan = Plan(
        id=uuid.uuid4().hex,
        mode=mode,
        created_at=now,
        expires_at=now + config.plan_ttl,
        proposed_by=proposed_by,
        actions=actions,
        skipped=skipped,
    )
    plan.digest = digest_of(plan)
    return plan


def _in_doubt(rec: TaskRecord, claim: RetryClaim) -> Skipped:
    new = claim.new_task_id
    return Skipped(
        rec.task_id,
        rec.name,
        f"in doubt: the exporter stopped while sending its retry as {new}; held until {new} "
        f"is seen (then it counts as retried) or for at most {DOUBT_HOLD_SECONDS // 60} minutes",
        f"pass its id in task_ids to retry it anyway, once you know {new} did not run",
    )


def _revoke_action(task: RunningTask, now: float, reason: str) -> Action:
    ran = f"{now - task.started_at:.0f}s" if task.started_at is not None else "an unknown time"
    return Action(
        kind="revoke",
        target=task.task_id,
        task_name=task.name,
        queue=task.queue,
        reason=reason,
        description=f"revoke {task.name} [{task.task_id}] on {task.worker} and terminate it "
        f"(SIGTERM); it has run {ran}",
    )


def _retry_action(
    rec: TaskRecord, reason: str, lookup: BackendLookup
) -> tuple[Action | None, Skipped | None]:
    name, queue, args, kwargs, complete = (
        rec.name,
        rec.queue,
        rec.args,
        rec.kwargs,
        rec.args_complete,
    )
    root = None
    if not complete or not name:
        stored = lookup(rec.task_id)
        if stored is not None and stored.args_complete and stored.name:
            name, args, kwargs, complete = stored.name, stored.args, stored.kwargs, True
            queue = queue or stored.queue
            root = stored.root_id
    if not complete or not name:
        return None, Skipped(
            rec.task_id,
            name,
            "not retryable: its name, args and kwargs are "
            "unknown (events carry only truncated reprs)",
            RESULT_EXTENDED_FIX,
        )
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        return None, Skipped(
            rec.task_id, name, "not retryable: stored args/kwargs are not a JSON list and object"
        )
    where = queue or "celery"
    note = "" if queue else " (its queue is unknown: the default queue)"
    return Action(
        kind="retry",
        target=rec.task_id,
        task_name=name,
        queue=where,
        args=list(args),
        kwargs=dict(kwargs),
        root_id=root,
        reason=reason,
        description=f"send {name} again with the same arguments to queue {where!r}{note}, "
        f"as a new task whose parent is {rec.task_id}",
    ), None


def _record_from_backend(task_id: str, lookup: BackendLookup) -> TaskRecord | None:
    stored = lookup(task_id)
    if stored is None:
        return None
    return TaskRecord(
        task_id=task_id,
        state=stored.state,
        name=stored.name,
        queue=stored.queue,
        exception_type=stored.exception_type,
    )
