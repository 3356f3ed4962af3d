"""The daemon's shared state: config, clock, ledger, the current snapshot, task source health,
the keeper's health, the tracked worker hosts (workerhosts.py: heartbeats, goodbyes, the
--max-workers bound), and the page's recent task details and trends (taskdetail.py,
trends.py).

Writers swap whole immutable objects (the snapshot) or call the ledger; readers (collectors,
API) take references under no lock or a short one. Nothing here does I/O. When an event
changes a worker's liveness, `workers_changed()` asks the poller (which registered itself) to
re-apply it to the current snapshot from memory, so metrics follow within the event's batch.
Services that live as long as the daemon and that collectors read (the API counters, the beat
board) are attached to it with `attached(kind)`: one of each kind per State.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from exporter.clock import Clock, SystemClock
from exporter.config import Config
from exporter.ledger import Ledger
from exporter.snapshot import EMPTY, Snapshot
from exporter.taskdetail import TaskDetails
from exporter.trends import Trends
from exporter.workerhosts import WorkerHosts


class Attachable(Protocol):
    """A per-State service: made with no arguments; `version` moves on every change."""

    version: int


A = TypeVar("A", bound=Attachable)


@dataclass(frozen=True)
class SourceStatistics:
    """What one task source counted, as typed fields (collectors and the sitrep read them).
    Totals since start; a field a source does not use stays at its default."""

    events: Mapping[str, int] = field(default_factory=dict)  # events received, by type
    skipped: Mapping[str, int] = field(default_factory=dict)  # not counted, by reason
    parse_errors: int = 0  # results or events that could not be parsed
    received: int = 0  # results handed to the ledger (pubsub)
    enable_events_errors: int = 0  # enable_events broadcasts that failed (events)
    task_events_enabled: bool = True  # False: workers run tasks but send no task events
    runs: int = 0  # completed reconcile passes
    keys_scanned: int = 0  # result keys SCAN returned to reconcile passes
    duration_seconds_total: float = 0.0  # of completed reconcile passes
    last_duration_seconds: float | None = None  # of the last completed reconcile pass


@dataclass(frozen=True)
class SourceHealth:
    """Health of one task source (events, pubsub, reconcile) as the source last reported it."""

    name: str
    enabled: bool
    up: bool = False
    last_error: str | None = None
    last_message_at: float | None = None  # wall-clock seconds
    messages_total: int = 0
    errors_total: int = 0
    stats: SourceStatistics = field(default_factory=SourceStatistics)


@dataclass(frozen=True)
class KeeperHealth:
    """Health of the keeper (saved ledger state), as it last reported; not a task source."""

    enabled: bool = False  # a keeper exists (there is a Redis result backend to save to)
    ok: bool = True  # the last load or save attempt worked (or none was due yet)
    saves: int = 0
    failures: int = 0
    last_save_at: float | None = None  # wall-clock seconds
    last_error: str | None = None


class State:
    def __init__(
        self, config: Config, clock: Clock | None = None, ledger: Ledger | None = None
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.ledger = ledger or Ledger.from_config(config, self.clock)
        self.started_at = self.clock.time()
        self._snapshot: Snapshot = EMPTY
        self._sources: dict[str, SourceHealth] = {}
        self._keeper = KeeperHealth()
        self.workers = WorkerHosts(config.max_workers, self.clock)
        # For the task detail and trends of /ui (taskdetail.py, trends.py): bounded, memory.
        self.details = TaskDetails(config.recent_size + config.recent_failed_size)
        self.trends = Trends(config.trends_step)
        self._on_workers_changed: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._version = 0  # bumped when the snapshot or a source's health is replaced
        self._watched: list[Callable[[], int]] = []
        self._attached: dict[type[Any], Any] = {}

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot  # one reference read: atomic

    def set_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._version += 1

    def change_token(self) -> tuple[int, ...]:
        """Moves whenever what /metrics shows may have changed (read without locks)."""
        return (
            self._version,
            self.ledger.changes,
            self.workers.dropped,
            *(version() for version in self._watched),
        )

    def watch_changes(self, version: Callable[[], int]) -> None:
        """Add a counter that moves when something else a collector reads changes (each
        attached service's version): /metrics is rendered again when it does."""
        self._watched.append(version)

    def attached(self, kind: type[A], make: Callable[[], A] | None = None) -> A:
        """The one `kind` of this state, made on first use (by `make`, else `kind()`); its
        `version` joins the change token, so /metrics is rendered again when it changes."""
        with self._lock:
            service: A | None = self._attached.get(kind)
            if service is None:
                made = self._attached[kind] = make() if make is not None else kind()
                self._watched.append(lambda: made.version)
                service = made
            return service

    def source_health(self) -> dict[str, SourceHealth]:
        with self._lock:
            return dict(self._sources)

    def set_source_health(self, health: SourceHealth) -> None:
        with self._lock:
            self._sources[health.name] = health
            self._version += 1

    def update_source(self, name: str, **changes: object) -> SourceHealth:
        """Change some fields of a source's health (creating it enabled if new)."""
        with self._lock:
            current = self._sources.get(name) or SourceHealth(name=name, enabled=True)
            updated = replace(current, **changes)  # type: ignore[arg-type]
            self._sources[name] = updated
            self._version += 1
            return updated

    @property
    def keeper_health(self) -> KeeperHealth:
        return self._keeper  # one reference read: atomic

    def set_keeper_health(self, health: KeeperHealth) -> None:
        self._keeper = health
        self._version += 1

    def saw_worker(self, hostname: str, when: float) -> None:
        """A heartbeat from `hostname` stamped `when` (wall-clock seconds)."""
        if self.workers.beat(hostname, when)[1]:
            self.workers_changed()

    def on_workers_changed(self, callback: Callable[[], None]) -> None:
        """Called (on the event thread) when a worker went offline or came back."""
        self._on_workers_changed = callback

    def workers_changed(self) -> None:
        callback = self._on_workers_changed
        if callback is not None:
            callback()
