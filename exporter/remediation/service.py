"""The fix-it service: propose, read and decide plans, between the API and the plan store.

It takes plain arguments (the caller has authenticated the principal and validated the
request) and refuses with the domain errors of `errors.py`, which the API maps to HTTP codes.
Proposing changes nothing in the cluster. Approving runs exactly the stored plan's actions,
once: the digest must match, the plan must be pending and unexpired (by the injectable clock),
and the decision key must be claimed atomically in Redis, so two replicas can never both run
it. Every step lands in the audit trail with the authenticated principal. The executor records
each outcome as it happens (`remediation.journal`); a plan whose executor died reads back as
`interrupted` with what ran (`remediation.recovery`), and proposing again covers the rest.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Sequence
from typing import Any

import redis

from exporter.apicounters import ApiCounters
from exporter.beat.source import board_for
from exporter.celery_io import CeleryIO
from exporter.remediation import executor, recovery, run_entry
from exporter.remediation.backend import lookup_or_none, meta_key
from exporter.remediation.errors import (
    AlreadyDecided,
    DigestMismatch,
    NoPlanStore,
    PlanExpired,
    PlanNotFound,
    PlanUnreadable,
)
from exporter.remediation.journal import Journal, LeaseLost
from exporter.remediation.planner import Plan, Targets, propose
from exporter.remediation.store import PlanStore
from exporter.state import State
from exporter.stuck import running_tasks

log = logging.getLogger(__name__)
UNREADABLE_REMEMBERED = 1024  # plan ids whose unreadable value was counted and logged


class Remediation:
    def __init__(
        self,
        state: State,
        io: CeleryIO,
        client: redis.Redis | None,
        store: PlanStore | None,
        stats: ApiCounters,
    ) -> None:
        self.state, self.io, self.client, self.store, self.stats = state, io, client, store, stats
        self._lock = threading.Lock()
        self._unreadable_seen: set[str] = set()

    def _store(self) -> PlanStore:
        if self.store is None:
            raise NoPlanStore(
                "fix-it needs a Redis result backend to keep plans and the "
                "audit trail (set --result-backend)"
            )
        return self.store

    def seen(self, task_id: str) -> bool:
        """The task exists: the ledger or the result backend knows it (a sent retry did)."""
        if self.state.ledger.get(task_id) is not None:
            return True
        try:
            return self.client is not None and bool(
                self.client.exists(meta_key(self.state.config, task_id))
            )
        except redis.RedisError:
            return False

    def propose(
        self,
        principal: str,
        mode: str = "conservative",
        task_ids: Sequence[str] = (),
        task_name: str | None = None,
        purge_queue: str | None = None,
        run_entries: Sequence[str] = (),
    ) -> Plan:
        """A new plan (stored and audited); it changes nothing until it is approved."""
        store = self._store()
        state = self.state
        now = state.clock.time()
        recovery.sweep(store, now)  # a dead executor's plan is interrupted before we read claims
        running = running_tasks(state.ledger, state.snapshot)
        targets = Targets(tuple(task_ids), task_name, purge_queue, tuple(run_entries))
        plan = propose(
            mode=mode,
            targets=targets,
            failures=state.ledger.recent(failed_only=True),
            running=running,
            lookup=lambda task_id: lookup_or_none(self.client, state.config, task_id),
            already_retried=lambda ids: recovery.claims_for_proposal(store, ids, self.seen),
            config=state.config,
            now=now,
            proposed_by=principal,
        )
        self._beat_runs(plan, targets, store, now)
        store.save(plan, now)
        store.audit(
            "proposed",
            principal,
            now,
            plan.id,
            mode=plan.mode,
            digest=plan.digest,
            actions=[_summary(a) for a in plan.actions],
            not_actionable=len(plan.skipped),
        )
        self.stats.plan("proposed")
        log.info(
            "plan %s proposed by %s: %d action(s), mode %s",
            plan.id,
            principal,
            len(plan.actions),
            plan.mode,
        )
        return plan

    def _beat_runs(self, plan: Plan, targets: Targets, store: PlanStore, now: float) -> None:
        """Beat entries to send now: named ones, and (no explicit targets) missed ones."""
        board, cfg = board_for(self.state), self.state.config
        actions, skipped = run_entry.propose(
            views=board.views(),
            run_specs=dict(board.run_specs),
            last=self.state.ledger.last_times(),
            requested=targets.run_entries,
            automatic=not targets.explicit,
            claims=lambda ids: recovery.claims_for_proposal(store, ids, self.seen),
            now=now,
            grace=cfg.beat_grace,
            stale_after=cfg.beat_stale_after,
        )
        if actions or skipped:
            run_entry.extend(plan, actions, skipped)

    def get(self, plan_id: str) -> Plan:
        """The plan as it stands; `PlanNotFound` or `PlanUnreadable` (treated as gone)."""
        try:
            plan = recovery.view(self._store(), plan_id, self.state.clock.time(), self.seen)
        except PlanUnreadable as exc:
            self._unreadable(exc)
            raise
        if plan is None:
            raise PlanNotFound(f"no plan {plan_id!r} (unknown, or older than its retention)")
        return plan

    def decide(
        self,
        principal: str,
        plan_id: str,
        digest: str,
        decision: str = "approve",
        comment: str | None = None,
    ) -> Plan:
        """Deny the plan, or approve it and run its actions once; the plan as it ended."""
        store = self._store()
        plan = self.get(plan_id)
        now = self.state.clock.time()
        if not hmac.compare_digest(digest.encode(), plan.digest.encode()):
            self._refuse(plan, principal, now, "wrong digest")
            raise DigestMismatch(
                "digest does not match this plan: re-read the plan with "
                f"GET /api/plans/{plan.id} and approve what it shows"
            )
        status = plan.status_at(now)
        if status == "expired":
            self._refuse(plan, principal, now, "expired")
            raise PlanExpired(f"plan {plan.id} expired; ask for a new fix-it plan")
        if status != "pending" or not store.claim_decision(plan.id, decision, principal):
            self._refuse(plan, principal, now, "already decided")
            current = store.get(plan.id) or plan
            by = f" by {current.decided_by}" if current.decided_by else ""
            raise AlreadyDecided(
                f"plan {plan.id} was already decided{by} (status "
                f"{current.status_at(now)}); it runs at most once"
            )
        plan.decided_by, plan.decided_at, plan.comment = principal, now, comment
        if decision == "deny":
            plan.status = "denied"
            store.save(plan, now)
            store.audit("denied", principal, now, plan.id, comment=comment)
            self.stats.plan("denied")
            log.info("plan %s denied by %s", plan.id, principal)
            return plan
        plan.status = "executing"
        journal = Journal(store, plan, now)
        journal.start(plan)
        store.audit("approved", principal, now, plan.id, comment=comment, digest=plan.digest)
        self.stats.plan("approved")
        log.info(
            "plan %s approved by %s: running %d action(s)", plan.id, principal, len(plan.actions)
        )
        up = sum(1 for w in self.state.snapshot.workers.values() if w.up) or None
        try:
            with journal.heartbeat():
                plan.outcomes = executor.execute(
                    plan, self.io, journal, self.stats, self.state.config.inspect_timeout, up
                )
        except LeaseLost:
            log.warning("plan %s: lost its lease while executing; stopped", plan.id)
            return self.get(plan.id)
        plan.status = "executed"
        done = self.state.clock.time()
        if not journal.finish(plan, done):
            return self.get(plan.id)
        store.audit("executed", principal, done, plan.id, outcomes=plan.outcomes)
        return plan

    def _unreadable(self, exc: PlanUnreadable) -> None:
        """Count and log an unreadable stored plan once per plan id (bounded memory)."""
        with self._lock:
            if exc.plan_id in self._unreadable_seen:
                return
            if len(self._unreadable_seen) >= UNREADABLE_REMEMBERED:
                self._unreadable_seen.clear()
            self._unreadable_seen.add(exc.plan_id)
        self.stats.plan("unreadable")
        log.warning(
            "plan %s: its key holds something this exporter did not write (%s); "
            "answered as no plan",
            exc.plan_id,
            exc.reason,
        )

    def _refuse(self, plan: Plan, principal: str, now: float, why: str) -> None:
        self.stats.plan("refused")
        log.warning("decision on plan %s by %s refused: %s", plan.id, principal, why)
        try:
            self._store().audit("refused", principal, now, plan.id, reason=why)
        except redis.RedisError as exc:  # the refusal itself still stands
            log.warning("could not audit refusal of plan %s: %s", plan.id, exc)

    def audit(self, limit: int, cursor: str | None) -> list[dict[str, Any]]:
        return self._store().audit_entries(limit, cursor)


def _summary(action: Any) -> dict[str, Any]:
    # No args here: the audit trail is readable by every operator and may be exported.
    return {
        "action": action.kind,
        "target": action.target,
        "task_name": action.task_name,
        "queue": action.queue,
        "reason": action.reason,
    }
