"""Per-delivery task counts and the queue-wait histogram with celery-exporter's labels.

What celery-exporter does for the three counters that count deliveries, bounded: every
task-sent, task-received and task-started event counts once under (name, hostname,
queue_name) (a retried task counts again), and queue wait (sent, or the ETA if later, to
started) is observed on each task-started. Outcomes (succeeded, failed, retried, revoked,
rejected) and runtimes are the ledger's, per node (ledger/hosts.py); compat/view.py joins
both. A task's name, queue, sent time and ETA are remembered from its earlier events for the
later ones (a task-started event names none of them), for the newest
`--ledger-max-tasks / 4` task ids. Names, queues and hosts are bounded by the ledger's
`LabelGuard` (folded into "other"), and so are their combinations (10 x --max-task-names). One
lock; nothing here does I/O.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.config import DEFAULT_BUCKETS, Config
from exporter.decode import clean
from exporter.decode.compat import host_part
from exporter.ledger.guard import OTHER, UNKNOWN, LabelGuard
from exporter.ledger.hosts import compat_default_queue, cumulative, observe
from exporter.taskdata import RECEIVED, SENT, STARTED, TaskUpdate

# The counters counted here, per delivery (celery-exporter's order).
KINDS = ("sent", "received", "started")
KIND_OF_STATE = {SENT: "sent", RECEIVED: "received", STARTED: "started"}
# celery-exporter's own queue-wait buckets (no sub-50 ms resolution, up to 30 min).
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# A task whose name no event gave: the ledger's word, so one task has one name label here
# (celery-exporter writes "None").
NO_NAME = UNKNOWN
UNKNOWN_HOST = UNKNOWN

Key = tuple[str, str, str]  # (name, hostname, queue_name)


def wait_buckets(config: Config) -> tuple[float, ...]:
    return WAIT_BUCKETS if config.wait_buckets == DEFAULT_BUCKETS else config.wait_buckets


@dataclass(frozen=True)
class DeliveryView:
    """A consistent copy for one render."""

    counters: dict[str, dict[Key, int]]  # kind -> labels -> deliveries
    queue_wait: dict[Key, tuple[tuple[int, ...], float]]  # labels -> (cumulative, sum)
    wait_bounds: tuple[float, ...]
    overflow: dict[str, int]
    tasks: int


class CompatCounts:
    def __init__(self, config: Config) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self.wait_bounds = wait_buckets(config)
        self._default_queue = compat_default_queue(config)
        self._generic_sent = config.generic_hostname_task_sent_metric
        self._generic_worker = config.generic_hostname_worker_task_metric
        self._max_tasks = max(1, config.ledger_max_tasks // 4)
        self._max_keys = max(1, 10 * config.max_task_names)
        self._guards = {
            "name": LabelGuard(config.max_task_names),
            "queue_name": LabelGuard(config.max_task_names),
            "hostname": LabelGuard(config.max_workers),
        }
        self._keys: set[Key] = set()
        self._key_overflow = 0
        # task id -> [name, queue, sent timestamp, eta], oldest first
        self._tasks: OrderedDict[str, list[str | float | None]] = OrderedDict()
        self._counts: dict[str, dict[Key, int]] = {kind: {} for kind in KINDS}
        self._wait: dict[Key, list[float]] = {}  # bucket counts (last: +Inf), then the sum

    def observe_many(self, deliveries: Iterable[tuple[TaskUpdate, str | None]]) -> None:
        """Count decoded task events: (the event's update, the event's hostname field)."""
        with self._lock:
            for update, node in deliveries:
                kind = KIND_OF_STATE.get(update.state)
                if kind is not None:
                    self._observe(update, node, kind)
            self.version += 1

    def _observe(self, update: TaskUpdate, node: str | None, kind: str) -> None:
        task = self._remember(update, kind)
        g = self._guards
        name = task[0]
        queue = task[1]
        host = host_part(node) or UNKNOWN_HOST
        if self._generic_sent if kind == "sent" else self._generic_worker:
            host = "generic"
        key: Key = (
            g["name"](name) if isinstance(name, str) else NO_NAME,
            g["hostname"](host),
            g["queue_name"](queue) if isinstance(queue, str) else self._default_queue,
        )
        if key not in self._keys:
            if len(self._keys) >= self._max_keys:
                self._key_overflow += 1
                key = (OTHER, OTHER, OTHER)
            self._keys.add(key)
        table = self._counts[kind]
        table[key] = table.get(key, 0) + 1
        if kind == "started" and update.timestamp is not None:
            sent, eta = task[2], task[3]
            if isinstance(sent, float):
                base = max(sent, eta) if isinstance(eta, float) else sent
                self._observe_wait(key, max(0.0, update.timestamp - base))

    def _remember(self, update: TaskUpdate, kind: str) -> list[str | float | None]:
        tasks = self._tasks
        task = tasks.get(update.task_id)
        if task is None:
            task = tasks[update.task_id] = [None, None, None, None]
            if len(tasks) > self._max_tasks:
                tasks.popitem(last=False)
        else:
            tasks.move_to_end(update.task_id)
        if update.name:
            task[0] = update.name
        if update.queue:
            task[1] = update.queue
        if kind == "sent":  # each publish (a retry's too) restarts the wait
            task[2] = float(update.timestamp) if update.timestamp is not None else None
            task[3] = update.eta
        elif update.eta is not None:
            task[3] = update.eta
        return task

    def _observe_wait(self, key: Key, value: float) -> None:
        observe(self._wait, key, self.wait_bounds, clean.finite(value) or 0.0)

    def view(self) -> DeliveryView:
        with self._lock:
            counters = {kind: dict(table) for kind, table in self._counts.items()}
            wait = {key: list(hist) for key, hist in self._wait.items()}
            overflow = {label: g.overflow for label, g in self._guards.items()}
            overflow["series"] = self._key_overflow
            tasks = len(self._tasks)
        return DeliveryView(counters, {key: cumulative(hist) for key, hist in wait.items()},
                            self.wait_bounds, overflow, tasks)  # fmt: skip
