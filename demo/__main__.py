"""`python -m demo` (`make demo`): a whole playground on one machine.

Brings up Redis (the one on 6379 if reachable, in its own DB and key prefix; else a private
redis-server), two Celery workers of the demo app, a load generator (successes, transient and
permanent failures, retries, a task that hangs past --stuck-after, a queue nobody consumes, and
a failure burst that trips the success-rate alert), the exporter, a celery beat with a healthy
and a broken periodic task (watched through a schedule file), and Prometheus with the
shipped rules when it is installed. Prints the URLs and live progress; Ctrl-C or SIGTERM stops
everything (no process is left behind).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from demo.stack import KEYPREFIX, RULES, DemoError, Interrupted, Stack, free_port


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    p.add_argument(
        "--duration", type=float, default=0, help="stop after N seconds (0: until Ctrl-C)"
    )
    p.add_argument("--redis-url", help="use this Redis instead of finding or starting one")
    p.add_argument(
        "--private-redis", action="store_true", help="start a redis-server even if 6379 answers"
    )
    p.add_argument("--port", type=int, default=0, help="exporter port (default: a free one)")
    p.add_argument("--prometheus-port", type=int, default=0)
    p.add_argument("--no-prometheus", action="store_true")
    p.add_argument(
        "--rules",
        type=Path,
        default=RULES,
        help="Prometheus rule file to load (default: the shipped rules beside this demo)",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tick", type=float, default=1.0, help="seconds between load batches")
    p.add_argument("--stuck-after", type=float, default=15.0)
    p.add_argument(
        "--burst-at",
        type=float,
        default=60.0,
        help="start a burst of failures after N seconds (0: never)",
    )
    p.add_argument("--burst-for", type=float, default=180.0)
    p.add_argument(
        "--load-only",
        action="store_true",
        help="only send load to DEMO_BROKER_URL (the compose file's loadgen)",
    )
    return p.parse_args(argv)


def scrape(url: str) -> dict[str, float]:
    """Exporter /metrics -> {'name{label=value,...}': value}, and per-family sums."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def prom_query(base: str, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{base}{path}?{query}", timeout=5) as resp:  # noqa: S310
        return json.loads(resp.read())["data"]


def progress(stack: Stack, started: float) -> str:
    m = scrape(stack.exporter_url)
    queues = " ".join(
        f"{q.split('.')[1]}={m.get(f'celery_queue_length{{queue_name={q}}}', 0):.0f}"
        for q in ("demo.default", "demo.slow", "demo.backlog")
    )
    line = (
        f"[{time.monotonic() - started:5.0f}s] workers {m.get('celery_workers', 0):.0f} | "
        f"sent {m.get('celery_task_sent_total', 0):.0f} "
        f"ok {m.get('celery_task_succeeded_total', 0):.0f} "
        f"failed {m.get('celery_task_failed_total', 0):.0f} "
        f"retried {m.get('celery_task_retried_total', 0):.0f} | queues {queues} | "
        f"stuck {m.get('celery_tasks_stuck', 0):.0f}"
    )
    if stack.prometheus_url:
        try:
            ratio = prom_query(stack.prometheus_url, "/api/v1/query",
                               query="celery:tasks_success_ratio:5m")["result"]  # fmt: skip
            alerts = prom_query(stack.prometheus_url, "/api/v1/alerts")["alerts"]
        except OSError as exc:
            return line + f" | prometheus: {exc}"
        if ratio:
            line += f" | success 5m {float(ratio[0]['value'][1]):.1%}"
        firing = sorted({a["labels"]["alertname"] for a in alerts if a["state"] == "firing"})
        pending = sorted({a["labels"]["alertname"] for a in alerts if a["state"] == "pending"})
        line += f" | alerts: {', '.join(firing) or 'none'}"
        if pending:
            line += f" (pending: {', '.join(pending)})"
    return line


def run_load_only(stop: threading.Event, tick: float) -> int:
    from demo.app import LoadGenerator  # reads DEMO_* from the environment

    load = LoadGenerator(tick=tick)
    load.start()
    stop.wait()
    load.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        print(f"\ndemo: {signal.Signals(signum).name}: shutting down", flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.load_only:
        return run_load_only(stop, args.tick)
    stack = Stack(stop_event=stop)
    failed = False
    try:
        return run(args, stack, stop)
    except Interrupted as exc:
        print(f"demo: interrupted while starting {exc}", flush=True)
        return 0
    except DemoError as exc:
        failed = True
        print(f"demo: error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop(keep_logs=failed)


def run(args: argparse.Namespace, stack: Stack, stop: threading.Event) -> int:
    broker = stack.start_redis(args.redis_url, args.private_redis)
    os.environ.update(DEMO_BROKER_URL=broker, DEMO_KEYPREFIX=KEYPREFIX)
    where = "the shared Redis" if stack.shared_redis else "Redis"
    print(f"demo: using {where} at {broker} (keys prefixed {KEYPREFIX!r})", flush=True)
    removed = stack.clean_keys()
    if removed:
        print(f"demo: removed {removed} keys left by an earlier demo", flush=True)
    stack.start_workers(args.workers)
    port = args.port or free_port()
    stack.start_exporter(port, args.stuck_after)
    stack.start_beat()
    if not args.no_prometheus:
        stack.start_prometheus(args.prometheus_port or free_port(), port, args.rules)
    from demo.app import LoadGenerator  # after DEMO_* are set

    load = LoadGenerator(tick=args.tick, slow_seconds=max(60.0, args.stuck_after * 4))
    print(f"demo: exporter   {stack.exporter_url}/metrics", flush=True)
    print(f"demo: operator   {stack.exporter_url}/ui  (token for this playground only: "
          f"{stack.operator_token})", flush=True)  # fmt: skip
    if stack.prometheus_url:
        print(f"demo: prometheus {stack.prometheus_url}/graph?g0.expr="
              "celery%3Atasks_success_ratio%3A5m&g0.range_input=15m", flush=True)  # fmt: skip
        print(f"demo: alerts     {stack.prometheus_url}/alerts", flush=True)
    print("demo: logs in " + str(stack.workdir) + "; Ctrl-C to stop", flush=True)
    started = time.monotonic()
    load.start()
    try:
        while not stop.wait(2.0):
            elapsed = time.monotonic() - started
            if args.duration and elapsed >= args.duration:
                break
            burst = args.burst_at > 0 and args.burst_at <= elapsed < args.burst_at + args.burst_for
            if burst != load.failure_burst:
                load.failure_burst = burst
                print(f"demo: failure burst {'on' if burst else 'off'}", flush=True)
            try:
                print(progress(stack, started), flush=True)
            except OSError as exc:
                print(f"demo: exporter not answering: {exc}", flush=True)
    finally:
        load.stop()
    print(f"demo: sent {sum(load.sent.values())} tasks: {json.dumps(load.sent, sort_keys=True)}",
          flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
