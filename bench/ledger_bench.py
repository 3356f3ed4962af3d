"""Ledger benchmarks: event ingest, pub/sub results, reconcile (with Redis stalls), RSS.

    python -m bench.ledger_bench            # full size (1M events, 1M stored results, ...)
    python -m bench.ledger_bench --small    # CI-sized smoke run

Figures printed, one per line; the ones recorded are in bench/RESULTS.md. Each part runs on
its own private redis-server where it needs one. Targets: >= 50k events/s/core through the
in-process ingest path, reconcile of 1M results <= 10 s with no Redis stall above 5 ms
(latency a concurrent client sees), RSS under 100 MB after 1M tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "celery_events.jsonl"
FULL = {"events": 1_000_000, "results": 200_000, "reconcile": 1_000_000, "rss": 1_000_000}
SMALL = {"events": 20_000, "results": 5_000, "reconcile": 5_000, "rss": 20_000}


def _state(**cfg: Any) -> Any:
    from exporter.config import Config
    from exporter.state import State

    return State(Config(broker_url="redis://127.0.0.1:1/0", **cfg))


def bench_events(n: int) -> dict[str, float]:
    """Replay the recorded real event stream (ids made unique per pass) through ingest."""
    from exporter.keeper.gate import StartGate
    from exporter.sources.events import EventsSource

    events = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    state = _state()

    class NoStream:
        def __init__(self, *_: Any) -> None:
            pass

    source = EventsSource(state, NoStream, StartGate())
    handle = source.handle
    done = 0
    started, cpu = time.perf_counter(), time.process_time()
    rep = 0
    while done < n:
        suffix = f"-{rep}"
        for event in events:
            e = dict(event)  # the receiver hands over a fresh dict per event
            if "uuid" in e:
                e["uuid"] = event["uuid"] + suffix
            handle(e)
            done += 1
            if done >= n:
                break
        rep += 1
    source.flush()
    wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {
        "events": done,
        "seconds": wall,
        "events_per_s": done / wall,
        "events_per_cpu_s": done / cpu_s,
    }


def _result(i: int, status: str = "SUCCESS") -> bytes:
    return json.dumps(
        {
            "status": status,
            "result": i,
            "traceback": None,
            "children": [],
            "date_done": "2026-11-28T10:00:00.000000+00:00",
            "task_id": f"t{i}",
            "name": "bench.task",
            "queue": "celery",
            "retries": 0,
        }
    ).encode()


def bench_results(n: int, redis_url: str) -> dict[str, float]:
    """PUBLISH n results on a real Redis; time until the listener has counted them all."""
    import redis

    from exporter.backend_redis import backend_client
    from exporter.keeper.gate import StartGate
    from exporter.sources.results import ResultsSource

    state = _state(result_backend=f"{redis_url}/3")
    boot = StartGate()
    boot.loaded.set()
    source = ResultsSource(state, lambda: backend_client(state.config, pubsub=True), boot)
    source.start()
    source.connected.wait(10)
    client = redis.Redis.from_url(f"{redis_url}/3")
    payloads = [_result(i) for i in range(n)]
    started = time.perf_counter()
    for start in range(0, n, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(n, start + 1000)):
            pipe.publish(f"celery-task-meta-r{i}", payloads[i])
        pipe.execute()
    published = time.perf_counter() - started
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = state.ledger.counts().tasks
        if sum(counts.values()) >= n:
            break
        time.sleep(0.01)  # polling a benchmark's finish line, not waiting on state in a test
    wall = time.perf_counter() - started
    source.stop()
    counted = sum(state.ledger.counts().tasks.values())
    # The in-process path alone (parse + ledger), without Redis and sockets:
    fresh = _state()
    src = ResultsSource(fresh, lambda: None, boot)
    batch = [(f"celery-task-meta-p{i}".encode(), payloads[i]) for i in range(n)]
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        src.handle(batch[start : start + 1000])
    inproc = time.perf_counter() - t0
    client.close()
    return {
        "results": n,
        "counted": counted,
        "publish_seconds": published,
        "results_per_s": counted / wall,
        "inprocess_results_per_s": n / inproc,
    }


def bench_reconcile(
    n: int, redis_url: str, server_pid: int | None = None, realtime: bool = False
) -> dict[str, float]:
    import redis

    from bench import stall
    from exporter.backend_redis import backend_client
    from exporter.keeper.gate import StartGate
    from exporter.sources.reconcile import ReconcileSource

    url = f"{redis_url}/4"
    client = redis.Redis.from_url(url)
    client.flushdb()
    t0 = time.perf_counter()
    for start in range(0, n, 5000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(n, start + 5000)):
            pipe.set(f"celery-task-meta-k{i}", _result(i, "FAILURE" if i % 10 == 0 else "SUCCESS"))
        pipe.execute()
    fill = time.perf_counter() - t0
    state = _state(
        result_backend=url,
        reconcile_batch=1000,
        reconcile_max_keys_per_second=1e9,
        ledger_max_tasks=200_000,
    )
    source = ReconcileSource(state, lambda: backend_client(state.config), StartGate())
    boosted = int(stall.raise_priority(server_pid, realtime)) if server_pid else 0

    def reconcile() -> tuple[float, float]:
        t, cpu = time.perf_counter(), time.process_time()
        source.run_once()
        return time.perf_counter() - t, time.process_time() - cpu

    stall.redis_reset(client)
    (seconds, cpu), during = stall.probe(url, reconcile, realtime)
    # Redis's own view: the part of a stall the reconcile's commands cause.
    redis_side = stall.redis_view(client)
    counted = sum(state.ledger.counts().tasks.values())
    # The box's own noise: the same probe for as long, with nothing else running.
    _, idle = stall.probe(url, lambda: time.sleep(seconds), realtime)

    def naive() -> float:
        t = time.perf_counter()
        keys = client.keys("celery-task-meta-*")
        for key in keys[:100]:
            client.get(key)
        return time.perf_counter() - t

    naive_s, naive_probe = stall.probe(url, naive)
    client.flushdb()
    client.close()
    with open("/proc/self/status") as fh:
        rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))
    return {
        "results": n,
        "fill_seconds": fill,
        "counted": counted,
        "reconcile_seconds": seconds,
        "reconcile_cpu_seconds": cpu,
        "rss_mb_after": rss / 1024,
        "redis_server_boosted": boosted,
        "realtime": int(realtime),
        **{f"probe_{k}": v for k, v in during.items()},
        **{f"baseline_probe_{k}": v for k, v in idle.items() if k != "boosted"},
        **redis_side,
        "naive_keys_get100_seconds": naive_s,
        "naive_max_stall_ms": naive_probe["max_ms"],
        "naive_to_reconcile_stall_ratio": (
            naive_probe["max_ms"] / during["max_ms"] if during["max_ms"] else 0.0
        ),
    }


def rss_child(n: int) -> None:
    """In a fresh process: n tasks (received, started, succeeded) through a default ledger."""
    from exporter.taskdata import RECEIVED, STARTED, SUCCESS, TaskUpdate

    state = _state()
    ledger = state.ledger
    now = time.time()
    for i in range(n):
        tid = f"{i:08d}-5f0c-4a7e-9a53-6c2d7c1e{i % 10000:04d}"
        name = f"app.tasks.t{i % 50}"
        ledger.apply(TaskUpdate(tid, RECEIVED, "events", timestamp=now, name=name, retries=0))
        ledger.apply(TaskUpdate(tid, STARTED, "events", timestamp=now, worker="w1@host"))
        ledger.apply(TaskUpdate(tid, SUCCESS, "events", timestamp=now, runtime=0.01))
    with open("/proc/self/status") as fh:
        rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))
    print(json.dumps({"tasks": n, "rss_mb": rss / 1024, "entries": ledger.counts().entries}))


def bench_rss(n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.ledger_bench", "--rss-child", str(n)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _redis() -> Any:
    from tests.support.redisserver import RedisServer

    server = RedisServer()
    server.start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_bench")
    parser.add_argument("--small", action="store_true", help="CI-sized run")
    for key in FULL:
        parser.add_argument(f"--{key}", type=int, default=None, help=f"size of the {key} part")
    parser.add_argument(
        "--only",
        choices=sorted(FULL),
        action="append",
        help="run only this part (repeatable), e.g. --only reconcile for profiling",
    )
    parser.add_argument(
        "--mget-chunk",
        type=int,
        default=None,
        help="keys per MGET in the reconcile part (default: the source's MGET_CHUNK)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="reconcile stall probe and redis-server at SCHED_FIFO (root), not nice -10",
    )
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child is not None:
        rss_child(args.rss_child)
        return 0
    if args.mget_chunk:
        from exporter.sources import reconcile

        reconcile.MGET_CHUNK = args.mget_chunk
    sizes = dict(SMALL if args.small else FULL)
    for key in FULL:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    parts = set(args.only or FULL)
    report: dict[str, dict[str, float]] = {}
    if "events" in parts:
        report["events"] = bench_events(sizes["events"])
        _print("events", report["events"])
    if parts & {"results", "reconcile"}:
        server = _redis()
        try:
            if "results" in parts:
                report["results"] = bench_results(sizes["results"], server.url)
                _print("results", report["results"])
            if "reconcile" in parts:
                pid = server.proc.pid if server.proc else None
                report["reconcile"] = bench_reconcile(
                    sizes["reconcile"], server.url, pid, args.realtime
                )
                _print("reconcile", report["reconcile"])
        finally:
            server.cleanup()
    if "rss" in parts:
        report["rss"] = bench_rss(sizes["rss"])
        _print("rss", report["rss"])
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(report, indent=2))
    return 0


def _print(part: str, figures: dict[str, float]) -> None:
    shown = ", ".join(
        f"{k}={v:,.3f}"
        if isinstance(v, float)
        else f"{k}={v:,}"
        if isinstance(v, int)
        else f"{k}={v}"
        for k, v in figures.items()
    )
    print(f"{part}: {shown}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
