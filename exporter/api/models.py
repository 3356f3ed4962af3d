"""Pydantic models of every API request and response: the OpenAPI schema is built from these.

Times are ISO-8601 UTC datetimes; durations and ages are seconds. Task args/kwargs appear only
when the exporter runs with --show-task-args; error messages are truncated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    message: str
    detail: Any = None


class TaskReport(BaseModel):
    state: str
    source: str = Field(description="events, pubsub, reconcile or inspect")
    at: datetime | None


class TaskOut(BaseModel):
    id: str
    name: str | None
    display_name: str = Field(
        description="The task name made readable: 'tests.fail_transient' -> 'Fail transient'"
    )
    name_label: str | None = Field(
        default=None,
        description='The name label of its celery_task_* series: the name, "other" past '
        '--max-task-names, or "unknown"',
    )
    status: str
    description: str = Field(description="One sentence on what happened to the task")
    queue: str | None = None
    worker: str | None = None
    retries: int = 0
    sent_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_seconds: float | None = None
    exception_type: str | None = None
    error: str | None = Field(None, description="The exception message, truncated")
    parent_id: str | None = None
    retryable: bool = Field(description="Name, args and kwargs are known exactly")
    args: Any = None
    kwargs: Any = None
    source: str = Field(description="ledger, or backend when read from the result backend")
    # Only /api/tasks/{id} fills these (the detail); lists leave them empty.
    received_at: datetime | None = None
    wait_seconds: float | None = Field(
        default=None, description="From sent (else received) to started: time spent waiting"
    )
    traceback: str | None = Field(
        default=None,
        description="The worker's traceback, cleaned and cut to its first 8,000 characters",
    )
    root_id: str | None = None
    children: list[str] = Field(
        default_factory=list, description="Tasks this one is the parent of (fix-it retries too)"
    )
    reports: list[TaskReport] = Field(
        default_factory=list,
        description="Which source reported which state, when (the first of each pair; "
        "every retry); kept for the most recent tasks only",
    )


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page")
    matched: int = Field(0, description="Tasks matching every filter, over all pages")
    by_status: dict[str, int] = Field(
        default_factory=dict,
        description="Tasks matching every filter but status, by status",
    )
    kept: int = Field(
        0,
        description="Tasks in the recent rings (--recent-size and --recent-failed-size bound them)",
    )
    oldest_at: datetime | None = Field(
        None, description="The oldest update the rings still hold: how far back a search reaches"
    )


class TrendPoint(BaseModel):
    start: datetime
    succeeded: int
    failed: int
    success_rate: float | None = Field(description="null when nothing finished in this step")
    finished_per_minute: float
    queue_depth: int | None = Field(description="Waiting in all queues at the step's last poll")
    queue_depth_max: int | None


class TrendsOut(BaseModel):
    step_seconds: float
    points: list[TrendPoint] = Field(description="Oldest first; steps without a poll are absent")
    summary: str = Field(description="The trends in one or two sentences")


class TaskCounts(BaseModel):
    window_seconds: float
    total: int = Field(description="completed + failed in the window + active + pending")
    active: int = Field(description="Running now on workers that answered the last poll")
    reserved: int = Field(description="Prefetched by workers, not started")
    pending: int = Field(description="Waiting in the broker queues")
    completed: int = Field(description="Succeeded within the window")
    failed: int = Field(description="Failed within the window")
    success_rate: float | None = Field(
        description="completed / (completed + failed); null when nothing finished in the window"
    )
    since_start: dict[str, int] = Field(
        description="Counters since the exporter started, by "
        "state (sent, received, started, succeeded, ...)"
    )


class WorkerOut(BaseModel):
    hostname: str
    up: bool
    last_seen: datetime | None
    active: int | None
    reserved: int | None
    concurrency: int | None
    queues: list[str]


class QueueOut(BaseModel):
    name: str
    length: int | None
    consumers: int | None
    workers: int = Field(description="Up workers consuming this queue")
    oldest_age_seconds: float | None


class StuckTask(BaseModel):
    id: str
    name: str
    worker: str
    queue: str | None
    running_seconds: float


class SourceOut(BaseModel):
    name: str
    enabled: bool
    up: bool
    last_error: str | None
    last_message_at: datetime | None


class BrokerHealth(BaseModel):
    up: bool
    last_error: str | None
    last_success: datetime | None
    snapshot_age_seconds: float | None


class Health(BaseModel):
    broker: BrokerHealth
    sources: list[SourceOut]


class Sitrep(BaseModel):
    generated_at: datetime
    tasks: TaskCounts
    workers: list[WorkerOut]
    queues: list[QueueOut]
    stuck: list[StuckTask] = Field(
        description="The longest-running stuck tasks, at most 50 (stuck_total counts them all)"
    )
    stuck_total: int = Field(0, description="Tasks running longer than --stuck-after")
    recent_failures: list[TaskOut]
    health: Health
    immediate_actions: list[str] = Field(description="Needs someone now, in plain words")
    watch_items: list[str] = Field(description="Worth a look, not urgent")


# Task ids are printable ASCII without spaces (Celery's are UUIDs); plan ids are what the
# planner makes (uuid4 hex). Anything else is refused with 422 before it reaches Redis.
TASK_ID_PATTERN = r"^[!-~]{1,200}$"
PLAN_ID_PATTERN = r"^[0-9a-f]{32}$"


class FixItRequest(BaseModel):
    mode: Literal["conservative", "balanced", "greedy"] = "conservative"
    task_ids: list[Annotated[str, Field(pattern=TASK_ID_PATTERN)]] = Field(
        default_factory=list,
        max_length=200,
        description="Explicit tasks: failed ones are retried, running ones revoked",
    )
    task_name: str | None = Field(
        None, max_length=300, description="Retry every recent failure of this task"
    )
    purge_queue: str | None = Field(
        None, min_length=1, max_length=300, description="Purge this queue (only ever on request)"
    )
    run_entries: list[Annotated[str, Field(min_length=1, max_length=400)]] = Field(
        default_factory=list,
        max_length=50,
        description="Beat entries to send now, once, with their own arguments and options "
        "(ENTRY, or SOURCE/ENTRY: redbeat, django). Without explicit targets, entries that "
        "missed runs while beat is up are proposed too",
    )


class ActionOut(BaseModel):
    index: int
    action: Literal["retry", "revoke", "purge", "run_entry"]
    target: str = Field(
        description="Task id; queue name for purge; SOURCE/ENTRY@DUE for run_entry (DUE: the "
        "Unix time of the run it stands in for; one run now per entry and due time)"
    )
    task_name: str | None
    queue: str | None
    description: str
    reason: str
    args: Any = None
    kwargs: Any = None
    options: dict[str, Any] | None = Field(
        None,
        description="run_entry: the entry's routing options as sent (headers only with "
        "--show-task-args)",
    )


class SkippedOut(BaseModel):
    task_id: str
    task_name: str | None
    reason: str
    fix: str | None


class OutcomeOut(BaseModel):
    index: int
    action: str
    target: str
    outcome: Literal["ok", "error", "skipped", "unknown"] = Field(
        description="unknown: the exporter stopped while sending this retry (in doubt)"
    )
    new_task_id: str | None = None
    detail: str | None = None
    error: str | None = None


class PlanOut(BaseModel):
    id: str
    status: Literal["pending", "executing", "executed", "interrupted", "denied", "expired"] = Field(
        description="interrupted: the exporter running it stopped; `outcomes` is what ran"
    )
    mode: str
    created_at: datetime
    expires_at: datetime
    proposed_by: str
    digest: str = Field(description="Send back with the approval: approves exactly these actions")
    actions: list[ActionOut]
    not_actionable: list[SkippedOut]
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    outcomes: list[OutcomeOut] = Field(default_factory=list)
    interrupted_at: datetime | None = None
    not_run: list[int] = Field(
        default_factory=list,
        description="Indexes of the actions an interrupted plan did not run: propose again "
        "for the same tasks to cover exactly these",
    )


class ApproveRequest(BaseModel):
    plan_id: str = Field(pattern=PLAN_ID_PATTERN)
    digest: str = Field(min_length=1, max_length=128)
    decision: Literal["approve", "deny"] = "approve"
    comment: str | None = Field(None, max_length=500)


class AuditEntry(BaseModel):
    id: str
    at: datetime
    event: str
    principal: str
    plan_id: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_cursor: str | None = None
