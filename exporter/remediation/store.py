"""Plans and the audit trail, in the result-backend Redis under the exporter's own prefix.

Keys (all under `<global_keyprefix>celery-ops-exporter:`): `plan:<id>` (the plan as JSON,
kept `RETENTION` seconds past its expiry so its status stays visible), `plan:<id>:decision`
(claimed once with SET NX: whichever replica claims it first decides; every other approval
or denial is refused), `retried:<task id>` (claimed with SET NX by the executor so a failure
is replayed at most once across plans), and `audit` (a stream capped with XADD MAXLEN ~).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from exporter.remediation.plan import Plan

RETENTION = 7 * 24 * 3600.0


class PlanStore:
    def __init__(self, client: redis.Redis, keyprefix: str = "", audit_max: int = 10_000) -> None:
        self.client = client
        self.prefix = f"{keyprefix}celery-ops-exporter:"
        self.audit_max = audit_max

    def _plan_key(self, plan_id: str) -> str:
        return f"{self.prefix}plan:{plan_id}"

    # -- plans -------------------------------------------------------------------------------
    def save(self, plan: Plan, now: float) -> None:
        ttl = max(1, int(plan.expires_at - now + RETENTION))
        self.client.set(self._plan_key(plan.id), plan.to_json(), ex=ttl)

    def get(self, plan_id: str) -> Plan | None:
        raw = self.client.get(self._plan_key(plan_id))
        return Plan.from_json(raw) if raw is not None else None

    def claim_decision(self, plan_id: str, decision: str, principal: str) -> bool:
        """True for the one caller (across replicas) that decides this plan."""
        value = json.dumps({"decision": decision, "by": principal})
        return bool(
            self.client.set(
                f"{self._plan_key(plan_id)}:decision", value, nx=True, ex=int(RETENTION)
            )
        )

    # -- replay guard ----------------------------------------------------------------------
    def already_retried(self, task_ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return set()
        values = self.client.mget([f"{self.prefix}retried:{i}" for i in ids])
        return {i for i, v in zip(ids, values, strict=True) if v is not None}

    def claim_retry(self, task_id: str, plan_id: str) -> bool:
        return bool(
            self.client.set(f"{self.prefix}retried:{task_id}", plan_id, nx=True, ex=int(RETENTION))
        )

    def release_retry(self, task_id: str) -> None:
        self.client.delete(f"{self.prefix}retried:{task_id}")

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
        out = []
        for entry_id, fields in rows or []:
            f = {_s(k): _s(v) for k, v in (fields or {}).items()}
            out.append(
                {
                    "id": _s(entry_id),
                    "event": f.get("event", ""),
                    "at": float(f.get("at", 0)),
                    "principal": f.get("principal", ""),
                    "plan_id": f.get("plan_id") or None,
                    "detail": json.loads(f.get("detail") or "{}"),
                }
            )
        return out


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
