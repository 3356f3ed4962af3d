"""Carry out the actions of an approved plan, once, and report an outcome per action.

The API calls `execute` only after `PlanStore.claim_decision` succeeded, so a plan runs at most
once across replicas; each retry also claims its task id so two plans never replay the same
failure. An action that fails never stops the others, except that once the broker proved
unreachable the remaining actions are reported as not tried rather than each waiting on it.
"""

from __future__ import annotations

import logging
from typing import Any

from exporter.api.stats import ApiStats
from exporter.celery_io import CeleryIO, control
from exporter.remediation.plan import Action, Plan
from exporter.remediation.store import PlanStore

log = logging.getLogger(__name__)


def execute(
    plan: Plan,
    io: CeleryIO,
    store: PlanStore,
    stats: ApiStats,
    revoke_timeout: float = 1.0,
    workers_up: int | None = None,
) -> list[dict[str, Any]]:
    outcomes = []
    unreachable: str | None = None
    for index, action in enumerate(plan.actions):
        if unreachable is not None:
            # Each attempt against a dead broker costs seconds: report the rest, untried.
            outcome = _blank(index, action)
            outcome.update(outcome="error", error=f"not tried: {unreachable}")
        else:
            outcome = _run(index, action, plan, io, store, revoke_timeout, workers_up)
            if outcome.pop("unreachable", False):
                unreachable = f"broker unreachable ({outcome['error']})"
        stats.action(action.kind, outcome["outcome"])
        outcomes.append(outcome)
    return outcomes


def _run(
    index: int,
    action: Action,
    plan: Plan,
    io: CeleryIO,
    store: PlanStore,
    revoke_timeout: float,
    workers_up: int | None,
) -> dict[str, Any]:
    out = _blank(index, action)
    try:
        if action.kind == "retry":
            if not store.claim_retry(action.target, plan.id):
                out.update(outcome="skipped", detail="already retried by another plan")
                return out
            try:
                out["new_task_id"] = control.send_retry(
                    io,
                    action.task_name or "",
                    action.args or [],
                    action.kwargs or {},
                    action.queue or "celery",
                    action.target,
                    action.root_id,
                    plan.id,
                )
            except Exception:
                store.release_retry(action.target)  # it never left: allow a later plan
                raise
            out["detail"] = f"sent as {out['new_task_id']} to queue {action.queue!r}"
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
