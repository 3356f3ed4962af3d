"""Idle cost: whole-process CPU per second of exporters watching a quiet cluster, side by side.

    python -m bench.idle_bench                       # 60 s window
    python -m bench.idle_bench --small               # CI-sized smoke run
    python -m bench.idle_bench --reference-python PY --reference-dir DIR --flower CELERY_BIN
    python -m bench.idle_bench --baseline REV --threads   # beside REV's code, per thread

One private redis-server is the broker and result backend; one real prefork worker (`-c 2
-E`) is connected and runs nothing. Side by side, as separate processes: this exporter with
its defaults (`--poll-interval 10`; inspect broadcasts through the lean Redis pidbox), the
same exporter with kombu's Mailbox for the broadcasts (the path it takes on RabbitMQ, kept
here as the A/B), both with every source off as well, and, when given, Flower and
danihodovic/celery-exporter. Each figure is user + system CPU from /proc/<pid>/stat (all
threads) over the window after `--settle-seconds`, with the wake-ups (voluntary context
switches of every thread) per second beside it. Every process's /metrics is scraped every
`--scrape-interval` seconds (15, as Prometheus; 0: never), since a scraped exporter renders.
/proc counts CPU in 10 ms ticks, so a 60 s window is exact to 0.17 ms/s.

`--baseline REV` runs the same variants of ours from `git archive REV` beside the working
tree's (before and after a change, in one run); `--only lean,off` keeps some variants (lean,
kombu, off); `--threads` adds each of ours' CPU and wake-ups per thread (bench/threads.py:
schedstat nanoseconds, exact; names from py-spy when installed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import threads
from bench.live_bench import ROOT, Watched, checkout, peers, scrape_all, wait

# Runs the daemon with kombu's Mailbox for the broadcasts: the same code, the other path.
KOMBU_PATH = (
    "import exporter.celery_io as c; c.CeleryReader.__init__.__defaults__ = (False,);"
    " from exporter.cli import main; raise SystemExit(main())"
)
OURS = {  # key for --only: (name, extra arguments, kombu's Mailbox)
    "lean": ("ours (lean inspect)", [], False),
    "kombu": ("ours (kombu inspect)", [], True),
    "off": ("ours, events and backend off (lean)", ["--events", "false", "--result-backend", ""],
            False),
}  # fmt: skip


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of `pid` (each is a sleep that ended)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    total += int(line.split()[1])
        except OSError:
            continue  # a thread that just ended
    return total


def watched(args: argparse.Namespace, url: str, baseline: Path | None) -> list[Watched]:
    from tests.support.common import free_port

    trees = [(ROOT, "")] + ([(baseline, f" @{args.baseline}")] if baseline else [])
    procs = []
    for tree, suffix in trees:
        for key in args.only.split(","):
            name, extra, kombu = OURS[key]
            port = free_port()
            head = (
                [sys.executable, "-c", KOMBU_PATH] if kombu else [sys.executable, "-m", "exporter"]
            )
            argv = [*head, "--broker-url", url, "--result-backend", url]
            argv += ["--instance", f"idle{len(procs)}", "--host", "127.0.0.1", "--port", str(port)]
            env = {"PYTHONPATH": str(tree)}
            procs.append(Watched(name + suffix, [*argv, *extra], port, cwd=tree, env=env))
    return procs + peers(args, url)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.redisserver import RedisServer
    from tests.support.workers import Worker

    server = RedisServer()
    server.start()
    url = f"{server.url}/0"
    scratch = tempfile.TemporaryDirectory(prefix="idle-bench-")
    baseline = checkout(args.baseline, Path(scratch.name)) if args.baseline else None
    procs = watched(args, url, baseline)
    stop = threading.Event()
    worker: Worker | None = None
    try:
        for p in procs:
            p.start()
        for p in procs:
            wait(lambda p=p: p.alive() and bool(p.metrics()), 300, f"{p.name} /metrics")
        worker = Worker({"TEST_BROKER_URL": url}, concurrency=2, extra=("-E",)).wait_ready()
        if args.scrape_interval > 0:  # as Prometheus does: every process, every interval
            threading.Thread(
                target=scrape_all, args=(procs, args.scrape_interval, stop), daemon=True
            ).start()
        time.sleep(args.settle_seconds)  # discovery, first polls and reconciles, imports
        ours = [p for p in procs if p.name.startswith("ours")] if args.threads else []
        cpu0 = {p.name: p.cpu() for p in procs}
        woke0 = {p.name: wakeups(p.proc.pid) for p in procs if p.proc}
        per0 = {p.name: threads.sample(p.proc.pid) for p in ours if p.proc}
        t0 = time.monotonic()
        time.sleep(args.seconds)
        wall = time.monotonic() - t0
        out: dict[str, Any] = {}
        for p in procs:
            p.alive()
            assert p.proc is not None
            out[p.name] = {
                "idle_ms_per_s": (p.cpu() - cpu0[p.name]) / wall * 1e3,
                "wakeups_per_s": (wakeups(p.proc.pid) - woke0[p.name]) / wall,
            }
            if p in ours:
                after = threads.sample(p.proc.pid)
                named = threads.names(p.proc.pid)
                out[p.name]["threads"] = threads.per_thread(per0[p.name], after, wall, named)
        return {"seconds": wall, "scrape_interval": args.scrape_interval, "processes": out}
    finally:
        stop.set()
        if worker is not None:
            worker.stop()
        for p in procs:
            p.stop()
        server.cleanup()
        scratch.cleanup()


def show(report: dict[str, Any]) -> None:
    scrape = report["scrape_interval"]
    print(
        f"idle: {report['seconds']:.0f}s window, one prefork worker (-c 2 -E), nothing running,"
        f" /metrics scraped {f'every {scrape:.0f}s' if scrape else 'never'}"
    )
    print(f"{'process':36} {'idle ms/s':>9} {'wake-ups/s':>10}")
    for name, f in report["processes"].items():
        print(f"{name:36} {f['idle_ms_per_s']:9.2f} {f['wakeups_per_s']:10.1f}")
    for name, f in report["processes"].items():
        if f.get("threads"):
            print(f"\n{name}, per thread (schedstat){'':6} {'ms/s':>6} {'wake-ups/s':>10}")
            for thread, cpu, woke in f["threads"]:
                print(f"  {thread:48} {cpu:6.3f} {woke:10.2f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_bench")
    parser.add_argument("--small", action="store_true", help="CI-sized run (short windows)")
    parser.add_argument("--seconds", type=float, default=None, help="idle window (60)")
    parser.add_argument("--settle-seconds", type=float, default=None, help="before it (20)")
    parser.add_argument(
        "--scrape-interval", type=float, default=15.0, help="scrape /metrics this often (0: never)"
    )
    parser.add_argument("--baseline", help="also run ours from this commit, side by side")
    parser.add_argument("--only", default=",".join(OURS), help="variants of ours (lean,kombu,off)")
    parser.add_argument("--threads", action="store_true", help="CPU and wake-ups per thread")
    parser.add_argument("--flower", help="a `celery` executable with flower installed")
    parser.add_argument("--reference-python", help="python of a celery-exporter venv")
    parser.add_argument("--reference-dir", help="a danihodovic/celery-exporter checkout")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 3 if args.small else 60
    if args.settle_seconds is None:
        args.settle_seconds = 2 if args.small else 20
    report = run(args)
    show(report)
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
