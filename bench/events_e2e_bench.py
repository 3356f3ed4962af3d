"""CPU per task event, end to end from a real Redis broker into the ledger.

    python -m bench.events_e2e_bench            # 20,000 tasks (60,000 events)
    python -m bench.events_e2e_bench --small    # CI-sized smoke run
    python -m bench.events_e2e_bench --rate 300 --tasks 2000 --batch 1   # a quiet cluster

A private redis-server is the broker. A consumer subprocess runs only the exporter's real
event path: the consumer the daemon picks for `--events-consumer` (auto: the lean Redis
subscriber, celery_io/redis_events.py; celery: Celery's event receiver over kombu), then
EventsSource (parse, ledger). Both are measured in the same run, one after the other, and the
ratio printed (`--events-consumer auto` alone to measure one).
This process publishes real Celery task events with Celery's own EventDispatcher: for each
task a task-received, task-started and task-succeeded event, as a worker started with -E
sends them, in two modes: one message per event (a worker without Celery's event loop:
solo, threads, gevent/eventlet pools, or prefork at low load), and Celery's own buffering
of task events in lists of up to 24 (`buffer_group=['task']`, what a prefork worker with
its event loop does under load). The consumer reports the CPU time of its whole process
(all threads: socket reads, envelope and JSON decode, event handling, ours) from ready
until it has handled every event. Target (issue): at least 5x cheaper than
danihodovic/celery-exporter's ~0.3 ms CPU per event, i.e. <= 60 us per event.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_CPU_PER_EVENT = 0.3e-3  # seconds, danihodovic/celery-exporter (issue figure)
EVENTS_PER_TASK = 3


def _config(broker_url: str) -> Any:
    from exporter.config import Config

    return Config(broker_url=broker_url)


def consumer(broker_url: str, expected: int, kind: str) -> None:
    """Subprocess: run the real event source until `expected` task events were handled,
    through the consumer the daemon picks for `--events-consumer kind`."""
    from exporter.celery_io import CeleryIO
    from exporter.celery_io.events import event_stream
    from exporter.keeper.gate import StartGate
    from exporter.sources.events import EventsSource
    from exporter.state import State

    config = _config(broker_url)
    state = State(config)
    io = CeleryIO(config)
    boot = StartGate()
    boot.loaded.set()
    boot.reconciled.set()
    ready, done = threading.Event(), threading.Event()
    seen = [0]
    used = [""]

    def stream(handler: Any, on_state: Any, batch_handler: Any) -> Any:
        def counting(event: dict[str, Any]) -> None:
            handler(event)
            if str(event.get("type", "")).startswith("task-"):
                seen[0] += 1  # one receiver thread: no lock needed
                if seen[0] >= expected:
                    done.set()

        def counting_batch(events: list[dict[str, Any]], counts: dict[str, int]) -> None:
            batch_handler(events, counts)
            seen[0] += sum(1 for e in events if str(e.get("type", "")).startswith("task-"))
            if seen[0] >= expected:
                done.set()

        def state_change(up: bool, error: str | None) -> None:
            on_state(up, error)
            if up:
                ready.set()

        made = event_stream(
            io.app, config.instance_id, kind, counting, state_change, counting_batch
        )
        used[0] = type(made).__name__
        return made

    source = EventsSource(state, stream, boot)
    source.start()
    if not ready.wait(30):
        raise SystemExit("event receiver did not connect")
    time.sleep(1.0)  # the receiver declares its queue/binding right after connecting
    cpu0, wall0, times0 = time.process_time(), time.perf_counter(), os.times()
    print("ready", flush=True)
    finished = done.wait(300)
    cpu, wall, times = time.process_time() - cpu0, time.perf_counter() - wall0, os.times()
    source.stop()
    # The bench's events name no queue, so their counts wait out --label-grace (the CPU
    # figures above are taken before this wait).
    time.sleep(state.config.label_grace + 0.2)
    counts = state.ledger.counts().tasks
    print(
        json.dumps(
            {
                "finished": finished,
                "events": seen[0],
                "cpu_seconds": cpu,
                "user_seconds": times.user - times0.user,
                "system_seconds": times.system - times0.system,
                "wall_seconds": wall,
                "ledger_task_events": sum(counts.values()),
                "consumer_class": used[0],
            }
        ),
        flush=True,
    )


def produce(broker_url: str, tasks: int, batch: int, rate: float = 0.0) -> float:
    """Publish the events of `tasks` tasks with Celery's EventDispatcher; returns seconds.
    batch > 1: buffered as a prefork worker does (a `task.multi` message of `batch` events).
    rate > 0: paced to about that many events per second (a quiet cluster), else flat out."""
    from exporter.celery_io import CeleryIO

    app = CeleryIO(_config(broker_url)).app
    started = time.perf_counter()
    with app.connection_for_write() as conn:
        buffered = {"buffer_group": ["task"], "buffer_limit": batch} if batch > 1 else {}
        dispatcher = app.events.Dispatcher(
            conn, hostname="celery@bench-worker", enabled=True, **buffered
        )
        for i in range(tasks):
            task_id = str(uuid.uuid4())
            dispatcher.send(
                "task-received",
                uuid=task_id,
                name="bench.tasks.add",
                args="(1, 2)",
                kwargs="{}",
                root_id=task_id,
                parent_id=None,
                retries=0,
                eta=None,
                expires=None,
            )
            dispatcher.send("task-started", uuid=task_id)
            dispatcher.send("task-succeeded", uuid=task_id, result=str(i), runtime=0.0012)
            if rate:
                ahead = started + (i + 1) * EVENTS_PER_TASK / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
        dispatcher.flush()
        dispatcher.close()
    return time.perf_counter() - started


def run(tasks: int, batch: int = 1, kind: str = "auto", rate: float = 0.0) -> dict[str, Any]:
    from tests.support.redisserver import RedisServer

    server = RedisServer()
    server.start()
    url = f"{server.url}/0"
    expected = tasks * EVENTS_PER_TASK
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.events_e2e_bench", "--consumer", url, str(expected), kind],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"consumer did not start: {line!r}")
        publish_seconds = produce(url, tasks, batch, rate)
        out, _ = proc.communicate(timeout=330)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        server.cleanup()
    result = json.loads(out.strip().splitlines()[-1])
    per_event = result["cpu_seconds"] / max(1, result["events"])
    result.update(
        consumer=kind,
        tasks=tasks,
        events_per_message=batch,
        paced_events_per_second=rate,
        publish_seconds=publish_seconds,
        cpu_us_per_event=per_event * 1e6,
        times_cheaper_than_0_3ms=REFERENCE_CPU_PER_EVENT / per_event if per_event else 0.0,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events_e2e_bench")
    parser.add_argument("--small", action="store_true", help="CI-sized run (500 tasks)")
    parser.add_argument("--tasks", type=int, default=None, help="tasks (3 events each)")
    parser.add_argument(
        "--batch",
        type=int,
        action="append",
        help="events per broker message (repeatable; default: 1 and 24, Celery's buffer)",
    )
    parser.add_argument(
        "--events-consumer",
        action="append",
        choices=["auto", "celery"],
        help="consumer(s) to measure, as --events-consumer of the daemon (repeatable; "
        "default: auto, i.e. what the daemon picks, and celery, side by side)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="publish at about this many events/s (a quiet cluster: one message per wake-up); "
        "default: as fast as the publisher goes",
    )
    parser.add_argument(
        "--consumer", nargs=3, metavar=("URL", "EVENTS", "KIND"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.consumer:
        consumer(args.consumer[0], int(args.consumer[1]), args.consumer[2])
        return 0
    tasks = args.tasks or (500 if args.small else 20_000)
    results = []
    kinds = args.events_consumer or ["auto", "celery"]
    for batch in args.batch or [1, 24]:
        by_kind = {}
        for kind in kinds:
            result = run(tasks, batch, kind, args.rate)
            results.append(result)
            by_kind[kind] = result
            shown = ", ".join(
                f"{k}={v:,.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
            )
            print(f"events_e2e: {shown}", flush=True)
        if "auto" in by_kind and "celery" in by_kind:
            lean, celery = by_kind["auto"], by_kind["celery"]
            ratio = celery["cpu_us_per_event"] / max(lean["cpu_us_per_event"], 1e-9)
            lean["celery_over_auto"] = ratio
            print(
                f"events_e2e: {batch} event(s)/message: auto ({lean['consumer_class']}) "
                f"{lean['cpu_us_per_event']:.1f} us/event, celery "
                f"{celery['cpu_us_per_event']:.1f} us/event: {ratio:.2f}x",
                flush=True,
            )
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(results, indent=2))
    return 0 if all(r["finished"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
