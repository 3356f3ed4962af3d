"""What became of a plan whose executor died, and of the retry claims it left behind.

A plan still `executing` whose lease is gone lost its executor (SIGKILL, OOM, a host gone, a
pause longer than the lease): `finalize` marks it `interrupted`, once, and audits it. `view`
shows such a plan with the outcomes recorded as they happened plus, for the one action that
may have been under way, what its claim says: sent, or in doubt. `claims_for_proposal` settles
in-doubt claims whose new task has been seen since (it was sent: the claim stays for good), so
a new plan proposes exactly the failures that were not retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import redis

from exporter.remediation.plan import DOUBT_HOLD_SECONDS, Plan, RetryClaim
from exporter.remediation.store import PlanStore

log = logging.getLogger(__name__)

# Whether a task id is known anywhere (the ledger, the result backend): a retry seen there was
# sent. Never raises.
Seen = Callable[[str], bool]


def finalize(store: PlanStore, plan_id: str, now: float) -> bool:
    """Mark an `executing` plan without a lease `interrupted`; True when this call did it."""
    key, lease = store._plan_key(plan_id), store.lease_key(plan_id)
    with store.client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(lease, key)
            if pipe.exists(lease):
                pipe.unwatch()
                return False  # its executor is alive
            try:
                plan = store.read(pipe.get(key))  # None when gone or not a plan
            except redis.ResponseError:  # WRONGTYPE: not a plan either
                plan = None
            pipe.multi()
            pipe.srem(store.executing_key, plan_id)
            if plan is not None and plan.status == "executing":
                plan.status, plan.interrupted_at = "interrupted", now
                pipe.set(key, plan.to_json(), ex=store.ttl(plan, now))
            pipe.execute()
        except redis.WatchError:  # the executor finished (or another replica did this) first
            return False
    if plan is None or plan.status != "interrupted":
        return False
    ran = int(store.client.llen(store.outcomes_key(plan_id)))
    log.warning(
        "plan %s was interrupted: its executor stopped renewing its lease after %d of %d "
        "action(s); the rest did not run and can be proposed again",
        plan_id,
        ran,
        len(plan.actions),
    )
    store.audit("interrupted", "exporter", now, plan_id, recorded=ran, actions=len(plan.actions))
    return True


def sweep(store: PlanStore, now: float) -> None:
    """Finalize every executing plan whose executor is gone (cheap: one set, one key each)."""
    for plan_id in store.executing():
        finalize(store, plan_id, now)


def view(store: PlanStore, plan_id: str, now: float, seen: Seen) -> Plan | None:
    """The plan as it stands; an orphaned one is finalized first."""
    plan = store.get(plan_id)
    if plan is None:
        return None
    if plan.status == "executing" and not store.lease_alive(plan_id):
        finalize(store, plan_id, now)
        plan = store.get(plan_id) or plan
    if plan.status == "interrupted":
        _add_in_flight(store, plan, seen)
    return plan


def _add_in_flight(store: PlanStore, plan: Plan, seen: Seen) -> None:
    """The outcome of the action the executor was on when it died, from its retry claim."""
    n = len(plan.outcomes)
    if n >= len(plan.actions) or plan.actions[n].kind not in ("retry", "run_entry"):
        return  # nothing was under way, or a revoke/purge: no claim to read (it shows as not run)
    action = plan.actions[n]
    claim = store.retry_claims([action.target]).get(action.target)
    if claim is None or claim.plan_id != plan.id or claim.index != n:
        return  # never claimed (or its claim expired): it did not run
    claim = _settle(store, action.target, claim, seen)
    out = {"index": n, "action": action.kind, "target": action.target, "error": None}
    new = claim.new_task_id
    if claim.sent:
        out.update(
            outcome="ok",
            new_task_id=new,
            detail=f"sent as {new} (seen after the executor stopped, before it recorded it)",
        )
    else:
        out.update(
            outcome="unknown",
            new_task_id=new,
            detail=f"in doubt: the exporter stopped while sending it as {new}; the failure is "
            f"held until {new} is seen or for at most {DOUBT_HOLD_SECONDS // 60} minutes. "
            "To retry it anyway, propose it by id.",
        )
    plan.outcomes = [*plan.outcomes, out]


def _settle(store: PlanStore, task_id: str, claim: RetryClaim, seen: Seen) -> RetryClaim:
    if claim.sent or not claim.new_task_id or not seen(claim.new_task_id):
        return claim
    store.mark_sent(task_id, claim)
    log.info("retry %s of %s was sent after all: it is known now", claim.new_task_id, task_id)
    return RetryClaim(claim.plan_id, claim.index, claim.new_task_id, "sent")


def claims_for_proposal(
    store: PlanStore, task_ids: Iterable[str], seen: Seen
) -> dict[str, RetryClaim]:
    """What blocks each failure: `sent` claims block; `sending` ones are in doubt.

    A claim whose plan is running now counts as sent (its send is under way); an in-doubt claim
    whose new task has been seen since is settled as sent here.
    """
    claims = store.retry_claims(task_ids)
    for task_id, claim in claims.items():
        if claim.sent:
            continue
        if store.lease_alive(claim.plan_id):
            claims[task_id] = RetryClaim(claim.plan_id, claim.index, claim.new_task_id, "sent")
        else:
            claims[task_id] = _settle(store, task_id, claim, seen)
    return claims
