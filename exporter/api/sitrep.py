"""The situation report: the cluster at a glance, and what to do about it in plain words.

Reads only plain state (snapshot, ledger, source health), so it is cheap enough for the page
to refresh every few seconds. The rules that write `immediate_actions` and `watch_items` are
here, each a sentence an on-call person can act on without opening Grafana.
"""

from __future__ import annotations

from exporter.api.beat_advice import beat_advice
from exporter.api.models import (
    BrokerHealth,
    Health,
    QueueOut,
    Sitrep,
    SourceOut,
    StuckTask,
    TaskCounts,
    WorkerOut,
)
from exporter.api.views import human_seconds, task_from_record, ts, utc
from exporter.snapshot import Snapshot, WorkerSnapshot
from exporter.state import State
from exporter.stuck import stuck_tasks
from exporter.taskdata import COUNTER_FOR_STATE

RECENT_FAILURES = 10
BACKLOG_AGE_WATCH = 300.0  # a queue whose oldest message waited this long is worth a look
LOW_SUCCESS = 0.9
MIN_FINISHED = 5  # below this a success rate says little
DOWN_WORKER_LINES = 10  # down workers named one per line, newest first; the rest summed up
# A wedged cluster can have thousands of stuck tasks: the report lists the longest-running
# ones and counts the rest, so its size does not grow with the cluster.
STUCK_LINES = 50
STUCK_NAMES = 10  # task names spelled out in the stuck advice; the rest counted


def build_sitrep(state: State) -> Sitrep:
    config, snap, ledger = state.config, state.snapshot, state.ledger
    now = state.clock.time()
    ok, bad = ledger.success_ratio().get("", (0, 0))
    workers_up = [w for w in snap.workers.values() if w.up]
    active = sum(w.active or 0 for w in workers_up)
    reserved = sum(w.reserved or 0 for w in workers_up)
    pending = sum(q.length or 0 for q in snap.queues.values())
    since: dict[str, int] = dict.fromkeys(COUNTER_FOR_STATE.values(), 0)
    since.update(ledger.totals())
    counts = TaskCounts(
        window_seconds=ledger.window,
        total=ok + bad + active + pending,
        active=active,
        reserved=reserved,
        pending=pending,
        completed=ok,
        failed=bad,
        success_rate=(ok / (ok + bad)) if ok + bad else None,
        since_start=since,
    )
    consuming = _consumers_by_queue(snap)
    queues = [
        QueueOut(
            name=q.name,
            length=q.length,
            consumers=q.consumers,
            workers=consuming.get(q.name, 0),
            oldest_age_seconds=q.oldest_age,
        )
        for q in sorted(snap.queues.values(), key=lambda q: q.name)
    ]
    all_stuck = stuck_tasks(ledger, snap, now, config.stuck_after)  # longest-running first
    stuck = [
        StuckTask(
            id=t.task_id,
            name=t.name,
            worker=t.worker,
            queue=t.queue,
            running_seconds=round(now - t.started_at, 3) if t.started_at is not None else 0.0,
        )
        for t in all_stuck[:STUCK_LINES]
    ]
    failures = [
        task_from_record(r, config) for r in ledger.recent(failed_only=True) if r.state == "FAILURE"
    ][:RECENT_FAILURES]
    sources = [
        SourceOut(
            name=h.name,
            enabled=h.enabled,
            up=h.up,
            last_error=h.last_error,
            last_message_at=ts(h.last_message_at),
        )
        for h in sorted(state.source_health().values(), key=lambda h: h.name)
    ]
    health = Health(
        broker=BrokerHealth(
            up=snap.health.broker_up,
            last_error=snap.health.last_error,
            last_success=ts(snap.health.last_success),
            snapshot_age_seconds=round(now - snap.taken_at, 3) if snap.ready else None,
        ),
        sources=sources,
    )
    report = Sitrep(
        generated_at=utc(now),
        tasks=counts,
        workers=[_worker(w) for w in sorted(snap.workers.values(), key=lambda w: w.hostname)],
        queues=queues,
        stuck=stuck,
        stuck_total=len(all_stuck),
        recent_failures=failures,
        health=health,
        immediate_actions=[],
        watch_items=[],
    )
    _advise(report, state, snap, now)
    return report


def _consumers_by_queue(snap: Snapshot) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in snap.workers.values():
        if w.up:
            for q in w.queues:
                out[q] = out.get(q, 0) + 1
    return out


def _worker(w: WorkerSnapshot) -> WorkerOut:
    return WorkerOut(
        hostname=w.hostname,
        up=w.up,
        last_seen=ts(w.last_seen),
        active=w.active,
        reserved=w.reserved,
        concurrency=w.pool_max_concurrency,
        queues=list(w.queues),
    )


def _advise(report: Sitrep, state: State, snap: Snapshot, now: float) -> None:
    act, watch = report.immediate_actions, report.watch_items
    if not snap.ready:
        watch.append("No cluster poll has finished yet: worker and queue numbers are not known.")
    elif not snap.health.broker_up:
        err = f": {snap.health.last_error}" if snap.health.last_error else ""
        act.append(
            f"The broker is unreachable{err}. Workers cannot receive tasks; check the "
            "broker service and the network first."
        )
    if snap.ready and snap.health.broker_up:
        up = [w for w in snap.workers.values() if w.up]
        if not up:
            act.append("No worker is up: nothing will run. Start workers or check why they died.")
        down = sorted((w for w in snap.workers.values() if not w.up), key=lambda w: -w.last_seen)
        for w in down[:DOWN_WORKER_LINES]:
            ago = human_seconds(max(0.0, now - w.last_seen))
            if w.offline:
                watch.append(f"Worker {w.hostname} shut down (worker-offline) {ago} ago.")
            else:
                watch.append(f"Worker {w.hostname} has not been seen for {ago}.")
        if len(down) > DOWN_WORKER_LINES:
            watch.append(
                f"{len(down) - DOWN_WORKER_LINES:,} more workers are down; see the worker list."
            )
    for q in report.queues:
        if not q.length:
            continue
        age = f", oldest {human_seconds(q.oldest_age_seconds)}" if q.oldest_age_seconds else ""
        consumers = q.consumers if q.consumers is not None else q.workers
        line = f"queue {q.name} has {q.length:,} waiting{age}, {consumers} consumers"
        if consumers == 0 and q.workers == 0:
            act.append(f"{line[0].upper()}{line[1:]}: start a worker with -Q {q.name}.")
        elif q.oldest_age_seconds and q.oldest_age_seconds > BACKLOG_AGE_WATCH:
            watch.append(f"{line[0].upper()}{line[1:]}: workers are not keeping up.")
    if report.stuck:
        distinct = sorted({s.name for s in report.stuck})
        names = ", ".join(distinct[:STUCK_NAMES])
        if len(distinct) > STUCK_NAMES:
            names += f" and {len(distinct) - STUCK_NAMES} more"
        act.append(
            f"{report.stuck_total} task(s) running longer than "
            f"{human_seconds(state.config.stuck_after)} ({names}): look at them, or ask "
            "for a greedy fix-it plan to revoke them."
        )
    tc = report.tasks
    window = human_seconds(tc.window_seconds)
    if tc.failed and tc.success_rate is not None:
        top = _top_exception(report)
        if tc.completed + tc.failed >= MIN_FINISHED and tc.success_rate < LOW_SUCCESS:
            act.append(
                f"Success rate is {tc.success_rate:.0%} over the last {window} "
                f"({tc.failed:,} failed{top}). Review recent failures; a conservative "
                "fix-it plan retries the transient ones."
            )
        else:
            watch.append(f"{tc.failed:,} task(s) failed in the last {window}{top}.")
    for s in report.health.sources:
        if s.enabled and not s.up:
            err = f": {s.last_error}" if s.last_error else ""
            watch.append(f"Task source {s.name} is down{err}; task counts may lag.")
    keeper = state.keeper_health  # saved state: not a task source, so not in the list above
    if keeper.enabled and not keeper.ok:
        err = f" ({keeper.last_error})" if keeper.last_error else ""
        watch.append(
            f"Saving the task counts failed{err}; after a restart they resume from the last "
            "save and are counted again from the result backend."
        )
    beat_act, beat_watch = beat_advice(state, now)
    act.extend(beat_act)
    watch.extend(beat_watch)
    events = state.source_health().get("events")
    if events is not None and not events.stats.task_events_enabled:
        watch.append(
            "Workers run tasks but send no task events (-E is off): start them with "
            "-E, or set --enable-events-interval; counts rely on the result backend."
        )


def _top_exception(report: Sitrep) -> str:
    seen: dict[str, int] = {}
    for t in report.recent_failures:
        if t.exception_type:
            seen[t.exception_type] = seen.get(t.exception_type, 0) + 1
    if not seen:
        return ""
    exc = max(seen, key=lambda k: seen[k])
    return f", mostly {exc}"
