"""A fix-it plan as plain data: its actions, what was left out and why, its status and digest,
and the retry claim that guards each replayed failure.

The digest covers the plan's id, expiry and every action (including the replay arguments), so
an approval names exactly what it approves. Stored as JSON by `store.PlanStore` and read
back through the total decoder `decode.plans`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

# How long a retry claim whose send is in doubt (the exporter died between claiming and
# recording it) blocks its failure when the new task is never seen: a sent retry normally
# reaches a worker, and so the ledger or the result backend, within seconds to minutes.
DOUBT_HOLD_SECONDS = 900


@dataclass(frozen=True)
class Action:
    kind: str  # retry | revoke | purge | run_entry
    # the task id (retry, revoke), the queue name (purge), SOURCE/ENTRY@DUE (run_entry)
    target: str
    description: str  # what it will do, in words
    reason: str  # why it is in the plan
    task_name: str | None = None
    queue: str | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    root_id: str | None = None
    # Set when the failure's earlier retry is in doubt (the exporter died while sending it as
    # this task id): approving this action takes over that claim, knowingly.
    overrides: str | None = None
    # run_entry: the beat entry's routing options (queue, exchange, routing_key, priority,
    # headers), sent as they are stored
    options: dict[str, Any] | None = None


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
    # pending | executing | executed | interrupted (its executor died) | denied; expired is
    # derived from the clock
    status: str = "pending"
    decided_by: str | None = None
    decided_at: float | None = None
    comment: str | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    interrupted_at: float | None = None

    def status_at(self, now: float) -> str:
        return "expired" if self.status == "pending" and now >= self.expires_at else self.status

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


@dataclass(frozen=True)
class RetryClaim:
    """Who replays a failure: `sending` until the send returned, then `sent`.

    A `sending` claim whose plan is no longer running is in doubt: the exporter died between
    claiming and recording, so the retry (`new_task_id`, chosen before the send) may or may
    not have left.
    """

    plan_id: str
    index: int | None = None
    new_task_id: str | None = None
    state: str = "sent"  # sending | sent

    @property
    def sent(self) -> bool:
        return self.state == "sent"

    def to_json(self) -> str:
        body = {"plan": self.plan_id, "index": self.index, "new": self.new_task_id}
        return json.dumps({**body, "state": self.state})


_LATER = ("overrides", "options")


def digest_of(plan: Plan) -> str:
    body = {
        "id": plan.id,
        "expires_at": plan.expires_at,
        # `overrides`, `options` joined later: left out while unset, so older plans keep
        # their digest
        "actions": [
            {k: v for k, v in asdict(a).items() if k not in _LATER or v is not None}
            for a in plan.actions
        ],
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
