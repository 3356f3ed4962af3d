"""Carry out the actions of an approved plan, once, and report an outcome per action.

The API calls `execute` only after `PlanStore.claim_decision` succeeded, so a plan runs at most
once across replicas; each retry also claims its task id so two plans never replay the same
failure. Each outcome is recorded in the journal as it happens, before the next action (see
`journal.py` for the claim -> send -> record order and what a crash between them leaves). An
action that fails never stops the others, except that once the broker proved unreachable the
remaining actions are reported as not tried rather than each waiting on it. What stops the
plan is losing the journal: a lost lease (`LeaseLost`) or a plan store that cannot be written
(`redis.RedisError`) ends it before the next action, as a crash would.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from exporter.apicounters import ApiCounters
from exporter.celery_io import CeleryIO, control
from exporter.remediation import run_entry
from exporter.remediation.journal import Journal
from exporter.remediation.plan import Action, Plan

log = logging.getLogger(__name__)

# Actions that claim their target before sending, so no two plans send it (journal.py).
CLAIMED = ("retry", run_entry.KIND)


def execute(
    plan: Plan,
    io: CeleryIO,
    journal: Journal,
    stats: ApiCounters,
    revoke_timeout: float = 1.0,
    workers_up: int | None = None,
) -> list[dict[str, Any]]:
    """Every action's outcome, each recorded before the next action ran.

    Raises `LeaseLost` or `redis.RedisError` when the journal is lost: the rest did not run.
    """
    outcomes = []
    unreachable: str | None = None
    for index, action in enumerate(plan.actions):
        journal.check()
        if unreachable is not None:
            # Each attempt against a dead broker costs seconds: report the rest, untried.
            outcome = _blank(index, action)
            outcome.update(outcome="error", error=f"not tried: {unreachable}")
        else:
            outcome = _run(index, action, plan, io, journal, revoke_timeout, workers_up)
            if outcome.pop("unreachable", False):
                unreachable = f"broker unreachable ({outcome['error']})"
        sent = action.target if action.kind in CLAIMED and outcome["new_task_id"] else None
        journal.record(outcome, sent=sent)
        stats.action(action.kind, outcome["outcome"])
        outcomes.append(outcome)
    return outcomes


def _run(
    index: int,
    action: Action,
    plan: Plan,
    io: CeleryIO,
    journal: Journal,
    revoke_timeout: float,
    workers_up: int | None,
) -> dict[str, Any]:
    out = _blank(index, action)
    if action.kind in CLAIMED:
        # The new id is chosen (and claimed) before the send, so a send whose outcome was never
        # recorded can still be recognised later by the task it created.
        new_id = str(uuid.uuid4())
        if not journal.claim(action.target, index, new_id) and not (
            action.overrides and journal.take_over(action.target, index, new_id, action.overrides)
        ):
            done = "retried" if action.kind == "retry" else "sent"
            out.update(outcome="skipped", detail=f"already {done} by another plan")
            return out
    try:
        if action.kind == "retry":
            try:
                control.send_retry(
                    io,
                    action.task_name or "",
                    action.args or [],
                    action.kwargs or {},
                    action.queue or "celery",
                    action.target,
                    action.root_id,
                    plan.id,
                    task_id=new_id,
                )
            except Exception:
                journal.release(action.target)  # it never left: allow a later plan
                raise
            out["new_task_id"] = new_id
            out["detail"] = f"sent as {new_id} to queue {action.queue!r}"
        elif action.kind == run_entry.KIND:
            try:
                run_entry.send(io, action, plan.id, new_id)
            except Exception:
                journal.release(action.target)  # it never left: allow a later plan
                raise
            out["new_task_id"] = new_id
            out["detail"] = f"sent {action.task_name} as {new_id} ({action.target})"
        elif action.kind == "revoke":
            replies = control.revoke_terminate(io, action.target, revoke_timeout, workers_up)
            workers = sorted(h for r in replies for h in r)
            out["detail"] = (
                f"revoked; confirmed by {', '.join(workers)}"
                if workers
                else "revoke broadcast sent; no worker confirmed within the timeout"
            )
        elif action.kind == "purge":
            count = control.purge_queue(io, action.target)
            out["detail"] = f"purged {count} message(s) from queue {action.target!r}"
        else:
            raise ValueError(f"unknown action {action.kind!r}")
    except Exception as exc:  # one failed action must not stop the rest; it is reported
        log.warning(
            "plan %s action %d (%s %s) failed: %s", plan.id, index, action.kind, action.target, exc
        )
        out.update(
            outcome="error",
            error=f"{type(exc).__name__}: {exc}"[:500],
            unreachable=control.is_broker_unreachable(exc),
        )
    return out


def _blank(index: int, action: Action) -> dict[str, Any]:
    return {
        "index": index,
        "action": action.kind,
        "target": action.target,
        "outcome": "ok",
        "new_task_id": None,
        "detail": None,
        "error": None,
    }
