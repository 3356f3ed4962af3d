"""A fix-it plan as plain data: its actions, what was left out and why, its status and digest.

The digest covers the plan's id, expiry and every action (including the replay arguments), so
an approval names exactly what it approves. Stored as JSON by `store.PlanStore`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Action:
    kind: str  # retry | revoke | purge
    target: str  # the task id (retry, revoke) or the queue name (purge)
    description: str  # what it will do, in words
    reason: str  # why it is in the plan
    task_name: str | None = None
    queue: str | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    root_id: str | None = None


@dataclass(frozen=True)
class Skipped:
    task_id: str
    task_name: str | None
    reason: str
    fix: str | None = None  # the setting or step that would make it actionable


@dataclass
class Plan:
    id: str
    mode: str
    created_at: float
    expires_at: float
    proposed_by: str
    actions: list[Action]
    skipped: list[Skipped] = field(default_factory=list)
    digest: str = ""
    status: str = "pending"  # pending | executing | executed | denied (expired is derived)
    decided_by: str | None = None
    decided_at: float | None = None
    comment: str | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def status_at(self, now: float) -> str:
        return "expired" if self.status == "pending" and now >= self.expires_at else self.status

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        data = json.loads(text)
        data["actions"] = [Action(**a) for a in data.get("actions", [])]
        data["skipped"] = [Skipped(**s) for s in data.get("skipped", [])]
        return cls(**data)


def digest_of(plan: Plan) -> str:
    body = {
        "id": plan.id,
        "expires_at": plan.expires_at,
        "actions": [asdict(a) for a in plan.actions],
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
