"""Feeds what inspect `active()` and `reserved()` saw (State.snapshot) into the ledger,
without counting.

A result stored without result_extended has no task name, and task-received has no queue;
when the poller saw the task running or reserved, its request's name and
`delivery_info.routing_key` name both, and counts waiting for them (ledger/attribution.py) are
applied under them.

It runs in the daemon's poll job, right after each poll (the only place a snapshot with new
tasks is made): not a job of its own every half poll interval, which woke the scheduler and
its pool twice per poll for nothing new (about 0.1 ms/s idle, bench/RESULTS.md).
"""

from __future__ import annotations

from exporter.state import State


class InspectedTasks:
    """Feeds the running and reserved tasks of the latest snapshot to the ledger."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._taken_at = -1.0

    def run(self) -> None:
        """Feed the current snapshot's tasks, unless they were fed already. None at all is
        no write: an idle cluster's polls do not move the ledger's change counter (which
        would make the keeper save and /metrics render again every poll)."""
        snapshot = self.state.snapshot
        if snapshot.taken_at == self._taken_at:
            return
        self._taken_at = snapshot.taken_at
        tasks = [
            (t.task_id, t.name, t.queue, t.worker, t.started_at)
            for w in snapshot.workers.values()
            for t in (*w.running, *w.waiting)
        ]
        if tasks:
            self.state.ledger.observe_running(tasks)
