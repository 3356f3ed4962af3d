"""Celery events source: task-* events into ledger updates; worker events into worker
liveness (State.workers) and the "-E is off" check (events_check.py).

Each event is decoded by the events decoder (decode/events.py: every field guarded); events
for tasks whose earlier events were missed fold in like any other. The Celery receiver
itself (or the lean Redis consumer, which hands over whole batches) lives in celery_io/;
this module never imports Celery.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from exporter.background import Background
from exporter.compat import counts_for
from exporter.decode import clean
from exporter.decode.events import STATE_OF_EVENT, event_timestamp, parse_event
from exporter.keeper.gate import StartGate
from exporter.sources.base import SourceStats, Tally
from exporter.sources.events_check import EventsEnabledCheck
from exporter.state import State
from exporter.taskdata import SOURCE_EVENTS, TaskUpdate

log = logging.getLogger(__name__)

# Counters are published from the receiver thread after a batch with task events when
# FLUSH_INTERVAL has passed, and by a timed job every FLUSH_BACKSTOP seconds for the last
# batch before a quiet spell. The job used to run every second: each APScheduler run cost
# ~0.5 ms of CPU (thread wake-ups, dispatch), most of an idle exporter's budget. A batch of
# worker events only (an idle worker's heartbeat, every 2 s) leaves them to the job: on this
# VM, publishing after each heartbeat doubled the code a heartbeat's wake-up runs with cold
# caches (bench/RESULTS.md); heartbeat counts and the "-E is off" check lag 10 s at most (an
# event type's first count is published at once: its series appears).
FLUSH_INTERVAL = 1.0
FLUSH_BACKSTOP = 10.0
_EVENT_TYPES = frozenset(STATE_OF_EVENT) | {"worker-online", "worker-heartbeat", "worker-offline"}
_text = clean.label


class EventsSource:
    name = SOURCE_EVENTS

    def __init__(self, state: State, stream_factory: Callable[..., Any], gate: StartGate) -> None:
        self.state = state
        self._gate = gate
        self.stats = SourceStats(state, self.name)
        self.check = EventsEnabledCheck()
        self._compat = counts_for(state)  # --compat danihodovic: per-delivery counts, or None
        self._tally = Tally()  # counted since the last flush
        self._pending = 0
        self._published: set[str] = set()  # event types published at least once
        self._flushed_at = float("-inf")
        self._counts_lock = threading.Lock()  # handle() and flush() run on different threads
        self._bg = Background("events", self._run, on_stop=self._stop_stream)
        # Celery's receiver calls handle() per event; the lean one handle_many() per batch.
        self.stream = stream_factory(self.handle, self._on_state, self.handle_many)

    def start(self) -> None:
        self._bg.start()

    def stop(self) -> None:
        self._bg.stop()
        self.flush()

    def _stop_stream(self) -> None:
        self.stream.stop()

    def jobs(self) -> list[tuple[Callable[[], None], float, str]]:
        jobs: list[tuple[Callable[[], None], float, str]] = [
            (self.flush, FLUSH_BACKSTOP, "events-flush")
        ]
        interval = self.state.config.enable_events_interval
        if interval > 0:
            jobs.append((self.enable_events, interval, "enable-events"))
        return jobs

    def enable_events(self) -> None:
        try:
            self.stream.enable_events()
        except Exception as exc:  # next interval tries again
            log.warning("enable_events broadcast failed: %s", exc)
            self.stats.enable_events_failed()

    def _run(self) -> None:
        if self._gate.wait(self._bg.stopping):
            self.stream.run(self._bg.stopping)

    def _on_state(self, up: bool, error: str | None) -> None:
        self.stats.publish(up=up, error=error)

    def handle(self, event: dict[str, Any]) -> None:
        """Called on the receiver thread for every event (Celery's receiver); never raises."""
        self.handle_many([event])

    def handle_many(
        self, events: list[dict[str, Any]], counts: dict[str, int] | None = None
    ) -> None:
        """Called on the receiver thread with a batch of events (and the consumer's own
        counts, e.g. skipped messages); never raises. Task updates go to the ledger under one
        lock per batch; counters are published by `flush`."""
        now = self.state.clock.time()
        kinds: Counter[str] = Counter()
        updates: list[TaskUpdate] = []
        task_hosts: dict[str, float] = {}  # host -> newest task event stamp
        compat = self._compat
        deliveries: list[tuple[TaskUpdate, str | None]] = []
        changed = False  # a worker went offline or came back: refresh the snapshot
        errors = 0
        for event in events:
            try:
                kind = event.get("type")
                kind = kind if isinstance(kind, str) and kind in _EVENT_TYPES else "other"
                kinds[kind] += 1
                update = parse_event(event)
                if update is not None:
                    updates.append(update)
                    if compat is not None:  # task-sent's hostname too (the producer's)
                        deliveries.append((update, _text(event.get("hostname"))))
                    if update.worker:
                        when = update.timestamp or now
                        task_hosts[update.worker] = max(when, task_hosts.get(update.worker, 0))
                elif kind.startswith("worker-"):
                    if task_hosts:  # task events before this heartbeat count first
                        changed = self._task_events(task_hosts, now) or changed
                    changed = self._worker_event(kind, event, now) or changed
            except Exception as exc:  # a malformed event is counted, not fatal
                errors += 1
                log.debug("bad event: %s: %s", type(exc).__name__, exc)
        if task_hosts:
            changed = self._task_events(task_hosts, now) or changed
        if changed:
            try:
                self.state.workers_changed()
            except Exception:  # a bug there must not kill the receiver thread
                log.exception("refreshing worker liveness failed")
        if updates:
            try:
                self.state.ledger.apply_many(updates)
                self.state.details.note_many(updates)
            except Exception as exc:  # never kill the receiver thread
                errors += len(updates)
                log.warning("ledger refused %d event updates: %s", len(updates), exc)
        if deliveries and compat is not None:
            try:
                compat.observe_many(deliveries)
            except Exception as exc:  # never kill the receiver thread
                errors += len(deliveries)
                log.warning("compat counts refused %d events: %s", len(deliveries), exc)
        with self._counts_lock:
            tally = self._tally
            tally.events.update(kinds)
            if counts:
                _consumer_counts(counts, tally)
            tally.parse_errors += errors
            self._pending += len(events)
            flush = self._pending >= 1000
        # Worker events alone wait for the job, unless one is of a type never published (a
        # series appears at once: a worker's first heartbeat after start).
        news = updates or errors or counts or not kinds.keys() <= self._published
        if flush or (news and self.state.clock.monotonic() - self._flushed_at >= FLUSH_INTERVAL):
            self.flush()

    def _task_events(self, hosts: dict[str, float], now: float) -> bool:
        """Task events confirm their workers; True if one was offline and came back."""
        tracked, lifted = self.state.workers.task_events(hosts)
        for host in tracked:
            self.check.task_event(host, now)
        hosts.clear()
        return lifted

    def _worker_event(self, kind: str, event: dict[str, Any], now: float) -> bool:
        """Heartbeat, online or offline; True if the worker's liveness changed. Hosts beyond
        --max-workers are not tracked, by the "-E is off" check either."""
        host = _text(event.get("hostname"))
        if not host:
            return False
        when = event_timestamp(event) or now
        if kind == "worker-offline":  # only ever removes from the check's memory
            tracked, changed = True, self.state.workers.offline(host, when, received=now)
        else:
            tracked, changed = self.state.workers.beat(host, when)
        if tracked:
            self.check.worker_event(kind, host, event.get("processed"), now)
        return changed

    def flush(self) -> None:
        """Publish counters to source health (batched: the per-event path stays cheap)."""
        self._flushed_at = self.state.clock.monotonic()
        with self._counts_lock:
            tally, self._tally = self._tally, Tally()
            pending, self._pending = self._pending, 0
            self._published.update(tally.events)
        self.stats.add(tally)
        self.check.retain(self.state.workers.hosts())  # forget evicted and purged hosts
        self.stats.task_events_enabled(self.check.enabled())
        self.stats.publish(
            messages=pending, message_at=self.state.clock.time() if pending else None
        )


def _consumer_counts(counts: dict[str, int], tally: Tally) -> None:
    """The lean consumer's counts (celery_io's EventDecoder.take_counts: `skipped:<why>`,
    `parse_errors`) read into typed fields, here at the boundary and nowhere else."""
    for key, n in counts.items():
        if key == "parse_errors":
            tally.parse_errors += n
        elif key.startswith("skipped:"):
            tally.skip(key.partition(":")[2], n)
