"""The one rule for "stuck": a task that has been running longer than `--stuck-after`.

What is running comes from two places, merged by task id:
- the ledger: tasks a source saw start (task-started events, STARTED results) and not finish;
- the snapshot: inspect `active()` of the workers that are up (a down worker's last answer is
  stale, so its tasks are not taken from it).
The ledger's start time wins (it is the event's own time); inspect fills in what the ledger
lacks (name, queue, worker, and a start time for tasks begun before the exporter listened).

The metric `celery_tasks_stuck`, the sitrep's stuck list and the planner's greedy revokes all
call this module, so a task is stuck in all three or in none.
"""

from __future__ import annotations

from exporter.ledger import Ledger
from exporter.snapshot import RunningTask, Snapshot

UNKNOWN = "unknown"


def running_tasks(ledger: Ledger, snapshot: Snapshot) -> list[RunningTask]:
    """Every task known to be running, once per task id."""
    merged: dict[str, RunningTask] = {}
    for worker in snapshot.workers.values():
        if worker.up:
            for task in worker.running:
                merged[task.task_id] = task
    for task_id, name, queue, host, started_at in ledger.running_tasks():
        seen = merged.get(task_id)
        if seen is None:
            merged[task_id] = RunningTask(
                task_id, name or UNKNOWN, host or UNKNOWN, queue, started_at
            )
        else:
            merged[task_id] = RunningTask(
                task_id,
                name or seen.name,
                seen.worker if seen.worker != UNKNOWN else host or UNKNOWN,
                queue or seen.queue,
                started_at if started_at is not None else seen.started_at,
            )
    return list(merged.values())


def is_stuck(task: RunningTask, now: float, limit: float) -> bool:
    return task.started_at is not None and now - task.started_at > limit


def stuck_tasks(ledger: Ledger, snapshot: Snapshot, now: float, limit: float) -> list[RunningTask]:
    """The running tasks past `limit` seconds, longest-running first."""
    stuck = [t for t in running_tasks(ledger, snapshot) if is_stuck(t, now, limit)]
    stuck.sort(key=lambda t: (t.started_at or 0.0, t.task_id))
    return stuck
