"""Plans and the audit trail, in the result-backend Redis under the exporter's own prefix.

Keys (all under `<global_keyprefix>celery-ops-exporter:`): `plan:<id>` (the plan as JSON,
kept `RETENTION` seconds past its expiry so its status stays visible), `plan:<id>:decision`
(claimed once with SET NX: whichever replica claims it first decides; every other approval
or denial is refused), `plan:<id>:outcomes` (a list: one outcome per action, pushed as it
happens, so what ran survives the executor), `plan:<id>:lease` (the running executor's token,
renewed while it runs: a plan `executing` without it lost its executor), `executing` (a set of
the plans being executed), `retried:<task id>` (a `RetryClaim`, claimed with SET NX by the
executor so a failure is replayed at most once across plans), and `audit` (a stream capped
with XADD MAXLEN ~). `journal.py` writes the execution keys; `recovery.py` reads them back.

Everything read back goes through the total decoder `decode.plans`: a key holding something
this exporter did not write (another Redis type, or JSON that is not a plan) raises
`PlanUnreadable` from `get` (the plan is treated as gone), an outcome that does not decode
shows as `unknown` in its place, and an audit entry's unreadable parts read as empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from exporter.decode.plans import read_audit, read_claim, read_outcome, read_plan
from exporter.remediation.errors import PlanUnreadable
from exporter.remediation.plan import Plan, RetryClaim

RETENTION = 7 * 24 * 3600.0


class PlanStore:
    def __init__(self, client: redis.Redis, keyprefix: str = "", audit_max: int = 10_000) -> None:
        self.client = client
        self.prefix = f"{keyprefix}celery-ops-exporter:"
        self.audit_max = audit_max

    def _plan_key(self, plan_id: str) -> str:
        return f"{self.prefix}plan:{plan_id}"

    def outcomes_key(self, plan_id: str) -> str:
        return f"{self.prefix}plan:{plan_id}:outcomes"

    def lease_key(self, plan_id: str) -> str:
        return f"{self.prefix}plan:{plan_id}:lease"

    def claim_key(self, task_id: str) -> str:
        return f"{self.prefix}retried:{task_id}"

    @property
    def executing_key(self) -> str:
        return f"{self.prefix}executing"

    @staticmethod
    def ttl(plan: Plan, now: float) -> int:
        return max(1, int(plan.expires_at - now + RETENTION))

    # -- plans -------------------------------------------------------------------------------
    def save(self, plan: Plan, now: float) -> None:
        self.client.set(self._plan_key(plan.id), plan.to_json(), ex=self.ttl(plan, now))

    def get(self, plan_id: str) -> Plan | None:
        """The stored plan with the outcomes recorded so far (as they happened); None when
        there is none; `PlanUnreadable` when its key holds something else."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self._plan_key(plan_id))
            pipe.lrange(self.outcomes_key(plan_id), 0, -1)
            raw, recorded = pipe.execute(raise_on_error=False)
        if isinstance(raw, redis.ResponseError) and "WRONGTYPE" in str(raw):
            raise PlanUnreadable(plan_id, "wrong_type")
        if isinstance(raw, Exception):
            raise raw
        if raw is None:
            return None
        plan = read_plan(raw)
        if isinstance(plan, str):
            raise PlanUnreadable(plan_id, plan)
        if isinstance(recorded, list) and recorded:
            # plans stored by an older version keep their outcomes in the JSON
            plan.outcomes = [self._outcome(plan, n, o) for n, o in enumerate(recorded)]
        return plan

    def read(self, raw: Any) -> Plan | None:
        """A plan value read by a transaction (recovery): None when it is not a plan."""
        plan = read_plan(raw) if raw is not None else None
        return plan if isinstance(plan, Plan) else None

    @staticmethod
    def _outcome(plan: Plan, n: int, raw: Any) -> dict[str, Any]:
        outcome = read_outcome(raw)
        if outcome is not None:
            return outcome
        action = plan.actions[n] if n < len(plan.actions) else None
        return {
            "index": n,
            "action": action.kind if action else "unknown",
            "target": action.target if action else "unknown",
            "outcome": "unknown",
            "new_task_id": None,
            "detail": "the recorded outcome cannot be read",
            "error": None,
        }

    def executing(self) -> list[str]:
        return sorted(as_text(m) for m in self.client.smembers(self.executing_key) or ())

    def lease_alive(self, plan_id: str) -> bool:
        return bool(self.client.exists(self.lease_key(plan_id)))

    def claim_decision(self, plan_id: str, decision: str, principal: str) -> bool:
        """True for the one caller (across replicas) that decides this plan."""
        value = json.dumps({"decision": decision, "by": principal})
        return bool(
            self.client.set(
                f"{self._plan_key(plan_id)}:decision", value, nx=True, ex=int(RETENTION)
            )
        )

    # -- replay guard ----------------------------------------------------------------------
    def retry_claims(self, task_ids: Iterable[str]) -> dict[str, RetryClaim]:
        """The claims on these failures: sent ones, and ones whose send is (or was) under way."""
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return {}
        values = self.client.mget([self.claim_key(i) for i in ids])
        return {i: read_claim(v) for i, v in zip(ids, values, strict=True) if v is not None}

    def mark_sent(self, task_id: str, claim: RetryClaim) -> None:
        """An in-doubt claim whose retry was seen after all: it now blocks for `RETENTION`."""
        sent = RetryClaim(claim.plan_id, claim.index, claim.new_task_id, "sent")
        self.client.set(self.claim_key(task_id), sent.to_json(), ex=int(RETENTION), xx=True)

    # -- audit -------------------------------------------------------------------------------
    def audit(
        self, event: str, principal: str, at: float, plan_id: str | None = None, **detail: Any
    ) -> str:
        fields = {
            "event": event,
            "principal": principal,
            "at": repr(at),
            "plan_id": plan_id or "",
            "detail": json.dumps(detail, default=str),
        }
        entry_id = self.client.xadd(
            f"{self.prefix}audit",
            fields,  # type: ignore[arg-type]
            maxlen=self.audit_max,
            approximate=True,
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def audit_entries(self, count: int = 100, before: str | None = None) -> list[dict[str, Any]]:
        """Newest first; `before` is an entry id to page past (exclusive)."""
        top = f"({before}" if before else "+"
        rows = self.client.xrevrange(f"{self.prefix}audit", max=top, min="-", count=count)
        return [read_audit(entry_id, fields) for entry_id, fields in rows or []]


def as_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
