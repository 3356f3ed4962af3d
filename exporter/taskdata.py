"""Plain task data shared by the sources, the ledger and the API: no Celery imports here.

Every source (events, result pub/sub, reconcile, inspect) turns what it heard into a
`TaskUpdate`; the ledger folds updates into `TaskRecord`s and counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# Celery states, plus SENT (task-sent event) and RECEIVED (task-received event).
SENT = "SENT"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
RETRY = "RETRY"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
PENDING = "PENDING"
# A traceback is kept (cleaned) up to this many characters; the tail past it is cut.
TRACEBACK_MAX = 8000

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED, REJECTED})
# The counter each state feeds: celery_task_<counter>_total.
COUNTER_FOR_STATE = {
    SENT: "sent",
    RECEIVED: "received",
    STARTED: "started",
    SUCCESS: "succeeded",
    FAILURE: "failed",
    RETRY: "retried",
    REVOKED: "revoked",
    REJECTED: "rejected",
}

# Sources, as labels of celery_exporter_results_received_total{source}.
SOURCE_EVENTS = "events"
SOURCE_PUBSUB = "pubsub"
SOURCE_RECONCILE = "reconcile"
SOURCE_INSPECT = "inspect"


@dataclass(frozen=True)
class TaskUpdate:
    """One normalised observation of a task. Unknown fields stay None."""

    task_id: str
    state: str
    source: str
    timestamp: float | None = None  # when it happened (wall-clock seconds), if known
    name: str | None = None
    queue: str | None = None
    worker: str | None = None
    runtime: float | None = None  # seconds
    retries: int | None = None
    eta: float | None = None
    exception_type: str | None = None
    exception_message: str | None = None
    traceback: str | None = None
    # Replay material; only the result backend with result_extended has it in full.
    args: Any = None
    kwargs: Any = None
    args_complete: bool = False  # False for event reprs, which Celery truncates
    parent_id: str | None = None
    root_id: str | None = None


# TaskUpdate is a frozen dataclass, whose __init__ sets 18 fields one object.__setattr__ at a
# time (about 2 us, and the hottest line of the event path under load). The decoders build it
# from a complete field dict instead (`update_from`), which gives an equal object at a third
# of the cost (tests compare both ways of building it).
UPDATE_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TaskUpdate)}


def update_from(values: dict[str, Any]) -> TaskUpdate:
    """A TaskUpdate whose fields are `values`: every field of UPDATE_DEFAULTS, no other."""
    update = object.__new__(TaskUpdate)
    object.__setattr__(update, "__dict__", values)
    return update


@dataclass
class TaskRecord:
    """What the ledger remembers about one task id (newest state wins)."""

    task_id: str
    state: str
    name: str | None = None
    queue: str | None = None
    worker: str | None = None
    sent_at: float | None = None
    received_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    runtime: float | None = None
    retries: int = 0
    exception_type: str | None = None
    exception_message: str | None = None
    args: Any = None
    kwargs: Any = None
    args_complete: bool = False
    parent_id: str | None = None
    sources: set[str] = field(default_factory=set)
    # The `name` label this task's counters carry (the ledger's label rule: the name,
    # "other" once --max-task-names is full, "unknown" without a name); set by the ledger.
    name_label: str | None = None

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES
