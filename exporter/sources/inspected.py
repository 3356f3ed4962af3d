"""Feeds what inspect `active()` and `reserved()` saw (State.snapshot) into the ledger,
without counting.

A result stored without result_extended has no task name, and task-received has no queue;
when the poller saw the task running or reserved, its request's name and
`delivery_info.routing_key` name both, and counts waiting for them (ledger/attribution.py) are
applied under them.
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.state import State


class InspectedTasks:
    """Feeds the running and reserved tasks of the latest snapshot to the ledger."""

    name = "inspect"

    def __init__(self, state: State) -> None:
        self.state = state
        self._taken_at = -1.0

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def jobs(self) -> list[tuple[Callable[[], None], float, str]]:
        return [(self.run, max(1.0, self.state.config.poll_interval / 2), "inspected-tasks")]

    def run(self) -> None:
        snapshot = self.state.snapshot
        if snapshot.taken_at == self._taken_at:
            return
        self._taken_at = snapshot.taken_at
        self.state.ledger.observe_running(
            (t.task_id, t.name, t.queue, t.worker, t.started_at)
            for w in snapshot.workers.values()
            for t in (*w.running, *w.waiting)
        )
