"""The cluster snapshot: immutable plain data that one poll produces and every reader shares.

The poller builds a new `Snapshot` and swaps it in whole; collectors and the API only read it,
so a scrape never waits on the broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunningTask:
    """A task a worker reported in inspect `active()`."""

    task_id: str
    name: str
    worker: str
    queue: str | None
    started_at: float | None  # wall-clock seconds, from the request's time_start


@dataclass(frozen=True)
class WorkerSnapshot:
    hostname: str
    # True when the worker answered this poll (or sent a heartbeat within --worker-timeout)
    # and has not said goodbye (worker-offline) since.
    up: bool
    last_seen: float  # wall-clock seconds of the last answer or heartbeat
    # None means the worker did not answer that inspect call, never "zero".
    active: int | None = None
    reserved: int | None = None
    scheduled: int | None = None
    pool_max_concurrency: int | None = None
    pool_processes: int | None = None
    # stats()["total"]: tasks accepted per task name since the worker started.
    processed: dict[str, int] | None = None
    queues: tuple[str, ...] = ()
    running: tuple[RunningTask, ...] = ()
    # Down because it sent worker-offline (not merely silent); its series stay until purged.
    offline: bool = False
    # inspect reserved(): tasks a worker holds but has not started (their names and queues)
    waiting: tuple[RunningTask, ...] = ()


@dataclass(frozen=True)
class QueueSnapshot:
    name: str
    # Messages waiting in the broker (Redis: sum over priority sub-queues). None: unknown.
    length: int | None = None
    consumers: int | None = None
    oldest_age: float | None = None  # seconds the next message to be taken has waited
    # "sent_event": from the task-sent event; "first_seen": since the exporter first saw it
    # at the head of the queue (a lower bound); None when the queue is empty or unknown.
    oldest_age_source: str | None = None


@dataclass(frozen=True)
class PollHealth:
    broker_up: bool = False
    last_error: str | None = None
    last_success: float | None = None  # wall-clock seconds
    duration: float | None = None  # seconds the last poll took
    polls_total: int = 0
    errors_total: int = 0
    # inspect calls to which no worker at all answered, by method
    inspect_timeouts_total: dict[str, int] = field(default_factory=dict)
    # parts of inspect replies dropped by their decoder (decode/inspect.py): malformed or hostile
    inspect_dropped_total: int = 0


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # wall-clock seconds; 0 before the first poll finished
    workers: dict[str, WorkerSnapshot] = field(default_factory=dict)
    queues: dict[str, QueueSnapshot] = field(default_factory=dict)
    # Redis broker: messages taken by workers but not acknowledged (prefetched, ETA,
    # acks_late running). Reported on their own, never added to queue length. None on AMQP.
    unacked: int | None = None
    health: PollHealth = field(default_factory=PollHealth)

    @property
    def ready(self) -> bool:
        return self.taken_at > 0


EMPTY = Snapshot(taken_at=0.0)
