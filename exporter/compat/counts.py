"""Per-delivery task counts and histograms with celery-exporter's labels (`--compat`).

What celery-exporter does, bounded: every task event counts once in the counter of its type
under (name, hostname, queue_name), `exception` too on failures; each event makes the other
counters of its labels exist at 0 (not `sent`, whose hosts are producers), so ratios have a
value before the first failure; runtime is observed on task-succeeded, queue wait (sent, or
the ETA if later, to started) on task-started. A task's name, queue, sent time and ETA are
remembered from its earlier events for the later ones (a task-succeeded event names none of
them), for the newest `--ledger-max-tasks / 4` task ids. Names, queues, hosts and exception
types are bounded like the ledger's labels (folded into "other"), and so are their
combinations (10 x --max-task-names). One lock; nothing here does I/O.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.config import DEFAULT_BUCKETS, Config
from exporter.decode import clean
from exporter.decode.compat import exception_class, host_part
from exporter.taskdata import (
    FAILURE,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    SENT,
    STARTED,
    SUCCESS,
    TaskUpdate,
)

# celery-exporter's counter order (its families are registered in this order).
KINDS = ("sent", "received", "started", "succeeded", "failed", "rejected", "revoked", "retried")
KIND_OF_STATE = {SENT: "sent", RECEIVED: "received", STARTED: "started", SUCCESS: "succeeded",
                 FAILURE: "failed", REJECTED: "rejected", REVOKED: "revoked",
                 RETRY: "retried"}  # fmt: skip
# celery-exporter's defaults: prometheus_client's histogram buckets for runtime, its own
# queue-wait buckets (no sub-50 ms resolution, up to 30 min). +Inf is always added.
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
DEFAULT_QUEUE = "celery"  # celery-exporter's --default-queue-name
NO_NAME = "None"  # what celery-exporter labels a task whose name it never learned
OTHER = "other"
UNKNOWN_HOST = "unknown"

Key = tuple[str, str, str]  # (name, hostname, queue_name)


def runtime_buckets(config: Config) -> tuple[float, ...]:
    """--buckets when set, else celery-exporter's default (ours differ)."""
    return RUNTIME_BUCKETS if config.buckets == DEFAULT_BUCKETS else config.buckets


def wait_buckets(config: Config) -> tuple[float, ...]:
    return WAIT_BUCKETS if config.wait_buckets == DEFAULT_BUCKETS else config.wait_buckets


def default_queue(config: Config) -> str:
    """--default-queue-name when set, else celery-exporter's default, "celery"."""
    return DEFAULT_QUEUE if config.default_queue_name == "unknown" else config.default_queue_name


class _Guard:
    """Up to `limit` distinct values; later ones fold into "other" (counted)."""

    __slots__ = ("limit", "overflow", "values")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.values: set[str] = set()
        self.overflow = 0

    def __call__(self, value: str) -> str:
        if value in self.values:
            return value
        if len(self.values) >= self.limit:
            self.overflow += 1
            return OTHER
        self.values.add(value)
        return value


class Hist:
    __slots__ = ("counts", "sum")

    def __init__(self, size: int) -> None:
        self.counts = [0] * (size + 1)  # the last slot is +Inf
        self.sum = 0.0


@dataclass(frozen=True)
class CompatView:
    """A consistent copy for one render."""

    counters: dict[str, dict[tuple[str, ...], int]]  # kind -> labels -> value (zeros included)
    runtime: dict[Key, tuple[tuple[int, ...], float]]  # labels -> (cumulative buckets, sum)
    queue_wait: dict[Key, tuple[tuple[int, ...], float]]
    runtime_bounds: tuple[float, ...]
    wait_bounds: tuple[float, ...]
    overflow: dict[str, int]
    tasks: int


class CompatCounts:
    def __init__(self, config: Config) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self.runtime_bounds = runtime_buckets(config)
        self.wait_bounds = wait_buckets(config)
        self._default_queue = default_queue(config)
        self._generic_sent = config.generic_hostname_task_sent_metric
        self._generic_worker = config.generic_hostname_worker_task_metric
        self._max_tasks = max(1, config.ledger_max_tasks // 4)
        self._max_keys = max(1, 10 * config.max_task_names)
        self._guards = {
            "name": _Guard(config.max_task_names),
            "queue_name": _Guard(config.max_task_names),
            "hostname": _Guard(config.max_workers),
            "exception": _Guard(config.max_exception_types),
        }
        self._keys: set[Key] = set()
        self._key_overflow = 0
        # task id -> [name, queue, sent timestamp, eta], oldest first
        self._tasks: OrderedDict[str, list[str | float | None]] = OrderedDict()
        self._counts: dict[tuple[str, Key, str], int] = {}  # (kind, labels, exception)
        self._seen: dict[str, set[Key]] = {kind: set() for kind in KINDS}
        self._runtime: dict[Key, Hist] = {}
        self._wait: dict[Key, Hist] = {}

    def observe_many(self, deliveries: Iterable[tuple[TaskUpdate, str | None]]) -> None:
        """Count decoded task events: (the event's update, the event's hostname field)."""
        with self._lock:
            for update, node in deliveries:
                self._observe(update, node)
            self.version += 1

    def _observe(self, update: TaskUpdate, node: str | None) -> None:
        kind = KIND_OF_STATE.get(update.state)
        if kind is None:
            return
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
        self._seen[kind].add(key)
        exc = g["exception"](exception_class(update.exception_message)) if kind == "failed" else ""
        slot = (kind, key, exc)
        self._counts[slot] = self._counts.get(slot, 0) + 1
        if kind == "succeeded" and update.runtime is not None:
            self._hist(self._runtime, key, self.runtime_bounds, update.runtime)
        elif kind == "started" and update.timestamp is not None:
            sent, eta = task[2], task[3]
            if isinstance(sent, float):
                base = max(sent, eta) if isinstance(eta, float) else sent
                self._hist(self._wait, key, self.wait_bounds, max(0.0, update.timestamp - base))

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

    @staticmethod
    def _hist(table: dict[Key, Hist], key: Key, bounds: tuple[float, ...], value: float) -> None:
        value = clean.finite(value) or 0.0
        hist = table.get(key)
        if hist is None:
            hist = table[key] = Hist(len(bounds))
        hist.counts[bisect_left(bounds, value)] += 1
        hist.sum += value

    def view(self) -> CompatView:
        with self._lock:
            counts = dict(self._counts)
            seen = {kind: set(keys) for kind, keys in self._seen.items()}
            runtime = {k: (tuple(h.counts), h.sum) for k, h in self._runtime.items()}
            wait = {k: (tuple(h.counts), h.sum) for k, h in self._wait.items()}
            overflow = {label: g.overflow for label, g in self._guards.items()}
            overflow["series"] = self._key_overflow
            tasks = len(self._tasks)
        counters: dict[str, dict[tuple[str, ...], int]] = {kind: {} for kind in KINDS}
        for kind in KINDS[1:]:  # zeros: every labels any other event type carried
            table = counters[kind]
            for other, keys in seen.items():
                if other != kind:
                    for key in keys:
                        table[(*key, "") if kind == "failed" else key] = 0
        for (kind, key, exc), value in counts.items():
            counters[kind][(*key, exc) if kind == "failed" else key] = value
        return CompatView(counters, _cumulative(runtime), _cumulative(wait),
                          self.runtime_bounds, self.wait_bounds, overflow, tasks)  # fmt: skip


def _cumulative(
    table: dict[Key, tuple[tuple[int, ...], float]],
) -> dict[Key, tuple[tuple[int, ...], float]]:
    out = {}
    for key, (counts, total) in table.items():
        running, acc = 0, []
        for c in counts:
            running += c
            acc.append(running)
        out[key] = (tuple(acc), total)
    return out
