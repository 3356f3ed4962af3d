"""The poll job: asks the cluster what it is doing and swaps in a new `Snapshot`.

Runs on the scheduler thread, never on a scrape. Between polls it remembers only what a
snapshot cannot: each worker's identity (queues, pool size) for polls it does not answer,
which queues it has known, and when it first saw each queue's head message (the lower bound
for the oldest-message age). Which workers exist and when they were last seen is
`State.workers` (bounded by --max-workers); when an event takes a worker offline or brings it
back, `refresh` re-applies that to the current snapshot from memory, on the event thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any

from exporter.cluster import BrokerUnavailable, ClusterReader, DepthReply, InspectReply
from exporter.decode.inspect import clean_reply
from exporter.snapshot import PollHealth, QueueSnapshot, RunningTask, Snapshot, WorkerSnapshot
from exporter.state import State
from exporter.workerhosts import HostView

log = logging.getLogger(__name__)

MAX_REMEMBERED_QUEUES = 1000
# How often a poll waits the whole inspect timeout to find workers it does not know yet
# (heartbeats from unknown hosts trigger one sooner).
DISCOVERY_INTERVAL = 60.0


class Poller:
    def __init__(self, state: State, reader: ClusterReader) -> None:
        self._state = state
        self._reader = reader
        self._clock = state.clock
        self._cfg = state.config
        self._known: dict[str, WorkerSnapshot] = {}
        # Held while a snapshot is built and swapped (never during broker I/O), so a refresh
        # from the event thread and a poll cannot swap in each other's older picture.
        self._lock = threading.Lock()
        self._queues_seen: dict[str, float] = {}  # queue -> last time a worker consumed it
        self._head_first_seen: dict[tuple[str, str], float] = {}
        self._health = PollHealth()
        self._outage = False
        self._last_discovery = float("-inf")
        state.on_workers_changed(self.refresh)

    def poll(self) -> Snapshot:
        started = self._clock.monotonic()
        now = self._clock.time()
        health = replace(self._health, polls_total=self._health.polls_total + 1)
        try:
            expected = self._expected_workers(now)
            # Anything on the broker can answer a broadcast: decode before reading (never raises).
            reply, dropped = clean_reply(self._reader.inspect(self._cfg.inspect_timeout, expected))
            if expected is None:
                self._last_discovery = now
            queues = self._queue_names(reply, now)
            depths = self._reader.depths(queues)
        except BrokerUnavailable as exc:
            self._health = replace(
                health,
                broker_up=False,
                last_error=str(exc),
                errors_total=health.errors_total + 1,
                duration=self._clock.monotonic() - started,
            )
            if not self._outage:
                log.error("broker unreachable, keeping the last good values: %s", exc)
                self._outage = True
            self._reader.close()
            with self._lock:
                snap = replace(self._state.snapshot, health=self._health)
                self._state.set_snapshot(snap)
            return snap
        if self._outage:
            log.warning("broker reachable again after an outage")
            self._outage = False
        timeouts = dict(health.inspect_timeouts_total)
        for method in reply.unanswered:
            timeouts[method] = timeouts.get(method, 0) + 1
        self._health = replace(
            health,
            broker_up=True,
            last_error=None,
            last_success=now,
            duration=self._clock.monotonic() - started,
            inspect_timeouts_total=timeouts,
            inspect_dropped_total=health.inspect_dropped_total + dropped,
        )
        queue_snaps = self._queues(depths, now)
        with self._lock:
            snap = Snapshot(
                taken_at=now,
                workers=self._workers(reply, now),
                queues=queue_snaps,
                unacked=depths.unacked,
                health=self._health,
            )
            self._state.set_snapshot(snap)
        return snap

    def refresh(self) -> None:
        """Re-apply goodbyes (worker-offline) and returns to the current snapshot: called on
        the event thread right after an event changed them; reads memory only."""
        with self._lock:
            snap = self._state.snapshot
            if not snap.workers:
                return
            views = self._state.workers.view()
            now = self._clock.time()
            workers: dict[str, WorkerSnapshot] = {}
            for host, worker in snap.workers.items():
                view = views.get(host)
                if view is None:
                    continue  # no longer tracked: evicted for a confirmed worker
                if view.offline and not worker.offline:
                    worker = _offline(worker, view)
                elif worker.offline and not view.offline:
                    up = (
                        self._cfg.worker_timeout == 0 or now - view.seen <= self._cfg.worker_timeout
                    )
                    worker = replace(worker, up=up, offline=False, last_seen=view.seen)
                workers[host] = worker
                if host in self._known:
                    self._known[host] = worker
            if workers != snap.workers:
                self._state.set_snapshot(replace(snap, workers=workers))

    def _expected_workers(self, now: float) -> int | None:
        """How many workers should answer, or None when it is time to discover new ones."""
        live = {h for h, w in self._known.items() if w.up}
        if not live or now - self._last_discovery >= DISCOVERY_INTERVAL:
            return None
        if self._state.workers.hosts() - set(self._known):
            return None  # a heartbeat from a worker we have not inspected yet
        return len(live)

    # -- workers ----------------------------------------------------------------------------
    def _workers(self, reply: InspectReply, now: float) -> dict[str, WorkerSnapshot]:
        stats = reply.get("stats") or {}
        tracked = self._state.workers
        answered = tracked.answered(stats, now)
        out: dict[str, WorkerSnapshot] = {}
        purge = self._cfg.purge_offline_worker_metrics
        for host, view in tracked.view().items():
            if purge and now - view.seen > purge:
                # Gone long enough: its series disappear (the aggregates keep counting).
                tracked.forget(host)
                continue
            out[host] = self._known[host] = self._worker(host, view, reply, answered, now)
        for host in set(self._known) - set(out):
            del self._known[host]  # purged, or evicted for a confirmed worker
        return out

    def _worker(
        self, host: str, view: HostView, reply: InspectReply, answered: set[str], now: float
    ) -> WorkerSnapshot:
        timeout = self._cfg.worker_timeout
        if host in answered:
            worker = _worker_from_reply(host, reply, now)
        elif host in self._known:
            # No answer this time: keep identity, drop per-poll numbers (None, not zero).
            worker = _identity(self._known[host], view.seen)
        else:
            worker = WorkerSnapshot(host, True, view.seen)
        if view.offline:
            # It said goodbye after this poll began: an answer gathered before that is stale.
            return _offline(worker, view)
        up = host in answered or timeout == 0 or now - view.seen <= timeout
        return replace(worker, up=up, last_seen=view.seen)

    # -- queues -----------------------------------------------------------------------------
    def _queue_names(self, reply: InspectReply, now: float) -> list[str]:
        for queues in (reply.get("active_queues") or {}).values():
            for q in queues or ():
                if isinstance(q, dict) and q.get("name"):
                    self._queues_seen[str(q["name"])] = now
        # A queue stays reported after its last worker left (celery_queue_workers 0 is what
        # a workers-down alert fires on); only a flood of queue names evicts the stalest.
        while len(self._queues_seen) > MAX_REMEMBERED_QUEUES:
            del self._queues_seen[min(self._queues_seen, key=self._queues_seen.__getitem__)]
        return sorted(set(self._cfg.queues) | set(self._queues_seen))

    def _queues(self, depths: DepthReply, now: float) -> dict[str, QueueSnapshot]:
        out: dict[str, QueueSnapshot] = {}
        live_heads: set[tuple[str, str]] = set()
        for name, depth in depths.queues.items():
            oldest: float | None = None
            source: str | None = None
            for head in depth.heads:
                sent = self._state.ledger.sent_time(head.task_id) if head.task_id else None
                if sent is not None:
                    age, src = max(0.0, now - sent), "sent_event"
                else:
                    key = (name, head.delivery_tag or head.task_id or "")
                    live_heads.add(key)
                    first = self._head_first_seen.setdefault(key, now)
                    age, src = now - first, "first_seen"
                if oldest is None or age > oldest:
                    oldest, source = age, src
            if depth.length == 0:
                oldest, source = 0.0, None
            out[name] = QueueSnapshot(name, depth.length, depth.consumers, oldest, source)
        # Forget heads that were taken; memory stays one entry per non-empty sub-queue.
        for key in set(self._head_first_seen) - live_heads:
            del self._head_first_seen[key]
        return out


def _identity(prev: WorkerSnapshot, seen: float) -> WorkerSnapshot:
    """What a silent worker keeps from its last answer: who it is, not what it was doing."""
    return WorkerSnapshot(
        prev.hostname,
        prev.up,
        seen,
        queues=prev.queues,
        pool_max_concurrency=prev.pool_max_concurrency,
        processed=prev.processed,
    )


def _offline(worker: WorkerSnapshot, view: HostView) -> WorkerSnapshot:
    return replace(_identity(worker, view.seen), up=False, offline=True)


def _count(reply: dict[str, Any] | None, host: str) -> int | None:
    if reply is None or host not in reply or reply[host] is None:
        return None
    return len(reply[host])


def _worker_from_reply(host: str, reply: InspectReply, now: float) -> WorkerSnapshot:
    stats = (reply.get("stats") or {}).get(host) or {}
    pool = stats.get("pool") or {}
    processes = pool.get("processes")
    queues = tuple(
        str(q["name"])
        for q in ((reply.get("active_queues") or {}).get(host) or ())
        if isinstance(q, dict) and q.get("name")
    )
    running = _tasks(reply.get("active"), host)
    total = stats.get("total")
    return WorkerSnapshot(
        hostname=host,
        up=True,
        last_seen=now,
        active=_count(reply.get("active"), host),
        reserved=_count(reply.get("reserved"), host),
        scheduled=_count(reply.get("scheduled"), host),
        pool_max_concurrency=_int(pool.get("max-concurrency")),
        pool_processes=len(processes) if isinstance(processes, list) else None,
        processed={str(k): int(v) for k, v in total.items()} if isinstance(total, dict) else None,
        queues=queues,
        running=running,
        waiting=_tasks(reply.get("reserved"), host),
    )


def _tasks(reply: dict[str, Any] | None, host: str) -> tuple[RunningTask, ...]:
    """Request dicts of inspect active() or reserved(), with the names and queues they give."""
    return tuple(
        RunningTask(
            task_id=str(t.get("id")),
            name=str(t.get("name") or "unknown"),
            worker=host,
            queue=_text((t.get("delivery_info") or {}).get("routing_key")),
            started_at=t.get("time_start") if isinstance(t.get("time_start"), float) else None,
        )
        for t in ((reply or {}).get(host) or ())
        if isinstance(t, dict)
    )


def _text(value: Any) -> str | None:
    return value[:500] if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None
