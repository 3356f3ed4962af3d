"""What the page's rings cost: the task detail ring on the update path, the trends sample on
the poll job, and the page's reads, at 1,000 task names and 50 workers (in process).

- update path: the events source's work per batch, `Ledger.apply_many` alone vs followed by
  `TaskDetails.note_many` (what the sources now do), on event-like updates (sent, received,
  started, succeeded; 5% failed with a traceback) over `--names` names and `--workers`
  workers, batches of 200; CPU seconds per update, best of `--repeat`.
- trends: `Trends.sample` after a poll, with the ledger changed since the last sample and
  idle (the common case between bursts).
- reads: `/api/tasks/recent` (2,000 kept records, a name filter and counts), `/api/tasks/{id}`
  and `/api/trends` through the real app, and `/metrics` rendered by the exporter's own
  renderer before and after the rings are full (they are not read by it).

    python -m bench.ui_bench
    python -m bench.ui_bench --tasks 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from exporter.ledger import Ledger
from exporter.snapshot import PollHealth, QueueSnapshot, Snapshot, WorkerSnapshot
from exporter.taskdata import TaskUpdate
from exporter.taskdetail import TaskDetails

TRACEBACK = "Traceback (most recent call last):\n" + '  File "x.py", line 1, in f\n' * 20


def updates(tasks: int, names: int, workers: int) -> list[TaskUpdate]:
    rnd = random.Random(1)
    out = []
    t = 1_700_000_000.0
    for i in range(tasks):
        tid = f"{rnd.getrandbits(128):032x}"
        name, worker = f"app.tasks.n{i % names}", f"celery@w{i % workers}"
        t += 0.001
        out.append(TaskUpdate(tid, "SENT", "events", t, name=name, queue=f"q{i % 10}"))
        out.append(TaskUpdate(tid, "RECEIVED", "events", t, name=name, worker=worker))
        out.append(TaskUpdate(tid, "STARTED", "events", t, worker=worker))
        if i % 20 == 0:
            out.append(
                TaskUpdate(tid, "FAILURE", "events", t, exception_type="E", traceback=TRACEBACK)
            )
        else:
            out.append(TaskUpdate(tid, "SUCCESS", "events", t, runtime=0.01))
    return out


def cpu_per_update(ups: list[TaskUpdate], with_details: bool, names: int) -> float:
    ledger = Ledger(max_task_names=names + 10, recent_size=1000, recent_failed_size=1000)
    details = TaskDetails(2000)
    start = time.process_time()
    for i in range(0, len(ups), 200):
        batch = ups[i : i + 200]
        ledger.apply_many(batch)
        if with_details:
            details.note_many(batch)
    return (time.process_time() - start) / len(ups)


def timed(fn: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ups = updates(args.tasks, args.names, args.workers)
    # Interleaved, best of each: a loaded machine slows both alike.
    runs = [(cpu_per_update(ups, False, args.names), cpu_per_update(ups, True, args.names))]
    runs += [
        (cpu_per_update(ups, False, args.names), cpu_per_update(ups, True, args.names))
        for _ in range(args.repeat - 1)
    ]
    base, both = min(r[0] for r in runs), min(r[1] for r in runs)
    print(f"update path, {len(ups):,} updates, {args.names} names, {args.workers} workers")
    print(f"  ledger only        {base * 1e6:7.2f} us/update")
    print(f"  ledger + details   {both * 1e6:7.2f} us/update   ratio {both / base:.2f}")

    from fastapi.testclient import TestClient

    from exporter.config import Config
    from exporter.http import create_app
    from exporter.state import State

    token = "bench-viewer-token"
    config = Config(
        broker_url="memory://",
        result_backend="",
        viewer_tokens=(token,),
        max_task_names=2000,
        metrics_render_interval=0,  # render on every scrape: the render's own cost
    )
    state = State(config)
    ledger = state.ledger
    for i in range(0, len(ups), 200):
        ledger.apply_many(ups[i : i + 200])
        state.details.note_many(ups[i : i + 200])
    now = time.time()
    workers = {
        f"celery@w{i}": WorkerSnapshot(
            f"celery@w{i}", True, now, active=1, reserved=0, pool_max_concurrency=4, queues=("q0",)
        )
        for i in range(args.workers)
    }
    queues = {f"q{i}": QueueSnapshot(f"q{i}", i * 10, 5, None) for i in range(10)}
    snap = Snapshot(now, workers, queues, health=PollHealth(broker_up=True, last_success=now))
    state.set_snapshot(snap)
    trends = state.trends
    trends.sample(now, ledger, snap)
    changed = [0.0]

    def sample_changed() -> None:
        ledger.changes += 1  # as if an event batch had landed since the last poll
        trends.sample(time.time(), ledger, snap)

    changed[0] = timed(sample_changed, 50)
    idle = timed(lambda: trends.sample(time.time(), ledger, snap), 2000)
    print(
        f"trends sample per poll: ledger changed {changed[0] * 1e3:.2f} ms, idle "
        f"{idle * 1e6:.1f} us"
    )

    client = TestClient(create_app(state))
    head = {"Authorization": f"Bearer {token}"}
    some = ups[-4].task_id
    reads = {
        "/api/tasks/recent?limit=50": lambda: client.get(
            "/api/tasks/recent?limit=50", headers=head
        ),
        "/api/tasks/recent?name=..": lambda: client.get(
            "/api/tasks/recent", params={"name": "app.tasks.n7"}, headers=head
        ),
        "/api/tasks/{id}": lambda: client.get(f"/api/tasks/{some}", headers=head),
        "/api/trends": lambda: client.get("/api/trends", headers=head),
    }
    for path, fn in reads.items():
        assert fn().status_code == 200
        print(f"  {path:28s} {timed(fn, 30) * 1e3:7.2f} ms")

    scrape = timed(lambda: client.get("/metrics"), 10)
    print(f"  {'/metrics (rendered per scrape)':28s} {scrape * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
