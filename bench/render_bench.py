"""What one /metrics render costs and what its samples are, in-process, at a cluster's size.

Builds the state of `names` task names over `queues` queues and `workers` workers the way
`bench/scrape_size_bench.py` feeds its exporters (3 tasks per name, each sent, received,
started and finished, 10% of names with one failure), then renders the registry as the
renderer thread does (`exporter/textformat.py`) and as prometheus_client alone does, in both
formats. Prints the median CPU time of `--rounds` renders, split into collecting the families
and writing them, and which families the samples and bytes are (per (name, queue) pair).

    python -m bench.render_bench                    # 1,000 names, 20 queues, 50 workers
    python -m bench.render_bench --names 5000 --workers 200 --rounds 3
    python -m bench.render_bench --no-sent          # no task-sent events: no queue waits
    python -m bench.render_bench --during 300       # + scrapes served during a render

`--during N`: the real HTTP app (uvicorn in a thread) is scraped N times per condition by
another process (keep-alive, gzip, OpenMetrics) while another thread renders the same
registry back to back, as the renderer thread does: with the GIL switch interval at
CPython's 5 ms and at `exposition.RENDER_SWITCH_INTERVAL`, in interleaved blocks so both
see the same machine load, and with no render running.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from prometheus_client.exposition import choose_encoder

from exporter.clock import FakeClock
from exporter.collectors import build_registry
from exporter.config import Config
from exporter.http import create_app
from exporter.poller import Poller
from exporter.state import State
from exporter.taskdata import FAILURE, RECEIVED, SENT, STARTED, SUCCESS, TaskUpdate
from exporter.textformat import encoder_for
from tests.support.cluster import FakeReader

OM = "application/openmetrics-text; version=1.0.0"
TEXT = "text/plain; version=0.0.4"


def build_state(names: int, queues: int, workers: int, sent: bool = True) -> State:
    clock = FakeClock()
    state = State(Config(max_task_names=max(500, names * 2)), clock)
    reader = FakeReader()
    for w in range(workers):
        reader.add_worker(f"celery@worker-{w}", queues=(f"queue-{w % queues}",))
    for q in range(queues):
        reader.set_queue(f"queue-{q}", q)
    Poller(state, reader).poll()
    now = clock.time()
    updates = []
    for n in range(names):
        name, queue = f"bench.app{n % 7}.tasks.task_{n}", f"queue-{n % queues}"
        for i in range(3):
            tid = f"{n}-{i}"
            host = f"celery@worker-{(n * 3 + i) % workers}"
            if sent:
                updates.append(TaskUpdate(tid, SENT, "events", now, name, queue))
            updates.append(TaskUpdate(tid, RECEIVED, "events", now, name, queue, host))
            updates.append(TaskUpdate(tid, STARTED, "events", now + 0.01 * i, worker=host))
            failed = i == 2 and n % 10 == 0
            end = FAILURE if failed else SUCCESS
            updates.append(
                TaskUpdate(tid, end, "events", now + 0.02, worker=host, runtime=0.01 * i,
                           exception_type="ValueError" if failed else None)
            )  # fmt: skip
    state.ledger.apply_many(updates)
    clock.advance(10)  # past --label-grace: nothing waits for a label
    state.ledger.counts()
    return state


def _median_ms(fn: Any, rounds: int) -> float:
    """Median CPU milliseconds of this thread (steadier than wall time on a shared machine)."""
    times = []
    for _ in range(rounds):
        started = time.thread_time()
        fn()
        times.append(time.thread_time() - started)
    return statistics.median(times) * 1e3


def breakdown(text: str, pairs: int) -> dict[str, Any]:
    """Samples and bytes per family (text format), and per (name, queue) pair."""
    samples: Counter[str] = Counter()
    size: Counter[str] = Counter()
    family = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("# TYPE "):
            family = line.split(" ")[2]
        if line.startswith("#"):
            size[family] += len(line)
            continue
        samples[family] += 1
        size[family] += len(line)
    total = sum(samples.values())
    top = {
        f: {"samples": samples[f], "bytes": size[f], "per_pair": round(samples[f] / pairs, 2)}
        for f, _ in samples.most_common(12)
    }
    return {"samples": total, "bytes": len(text.encode()), "pairs": pairs, "families": top}


def run(names: int, queues: int, workers: int, rounds: int, sent: bool = True) -> dict[str, Any]:
    state = build_state(names, queues, workers, sent)
    registry = build_registry(state)
    pairs = len({(n, q) for n, q, _c in state.ledger.counts().tasks})
    out: dict[str, Any] = {"names": names, "queues": queues, "workers": workers, "sent": sent}
    out["collect_ms"] = _median_ms(lambda: list(registry.collect()), rounds)
    for label, accept in (("text", TEXT), ("openmetrics", OM)):
        client, _ = choose_encoder(accept)
        fast = encoder_for(client)
        assert fast(registry) == client(registry), "the fast writer must match the client"
        out[label] = {
            "render_ms": _median_ms(lambda f=fast: f(registry), rounds),  # type: ignore[misc]
            "client_ms": _median_ms(lambda c=client: c(registry), max(1, rounds // 2)),  # type: ignore[misc]
        }
    text = encoder_for(choose_encoder(TEXT)[0])(registry).decode()
    out["breakdown"] = breakdown(text, pairs)
    return out


# The scraper runs in its own process, as Prometheus does: in this one it would wait for the
# GIL too. One keep-alive connection, gzip and OpenMetrics asked for, the body read whole
# (not decompressed: Prometheus's time to decompress is not the exporter's latency).
_SCRAPER = """
import http.client, json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection(host, port, timeout=60)
conn.connect()
conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
headers = {"Accept": sys.argv[4], "Accept-Encoding": "gzip"}
out = []
for _ in range(n):
    t0 = time.perf_counter()
    conn.request("GET", "/metrics", headers=headers)
    conn.getresponse().read()
    out.append(time.perf_counter() - t0)
print(json.dumps(out))
"""


def during_render(state: State, scrapes: int, block: int = 20) -> dict[str, Any]:
    from bench.scrape_bench import serve
    from exporter.exposition import RENDER_SWITCH_INTERVAL

    registry = build_registry(state)
    render = encoder_for(choose_encoder(OM)[0])
    stop = threading.Event()
    running = threading.Event()

    def renderer() -> None:
        while not stop.is_set():
            if running.is_set():
                render(registry)
            else:
                time.sleep(0.001)

    conditions = {"no render": None, "render, 5 ms": 0.005}
    conditions[f"render, {RENDER_SWITCH_INTERVAL * 1e3:g} ms"] = RENDER_SWITCH_INTERVAL
    latencies: dict[str, list[float]] = {c: [] for c in conditions}
    thread = threading.Thread(target=renderer, daemon=True)
    thread.start()
    previous = sys.getswitchinterval()
    try:
        with serve(create_app(state, None, api=False)) as url:
            host, port = url.rsplit("/", 1)[1].split(":")
            cmd = [sys.executable, "-c", _SCRAPER, host, port]
            subprocess.run([*cmd, "1", OM], check=True, capture_output=True)  # first: inline
            while min(len(v) for v in latencies.values()) < scrapes:
                for condition, interval in conditions.items():
                    (running.set if interval else running.clear)()
                    sys.setswitchinterval(interval or previous)
                    done = subprocess.run(
                        [*cmd, str(block), OM], check=True, capture_output=True, text=True
                    )
                    latencies[condition] += json.loads(done.stdout)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(previous)
    out = {}
    for condition, values in latencies.items():
        q = statistics.quantiles(values, n=100, method="inclusive")
        out[condition] = {
            "p50_ms": round(q[49] * 1e3, 2),
            "p90_ms": round(q[89] * 1e3, 2),
            "p99_ms": round(q[98] * 1e3, 2),
            "max_ms": round(max(values) * 1e3, 2),
            "scrapes": len(values),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render_bench")
    parser.add_argument("--names", type=int, action="append", help="task names (repeatable)")
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-sent", action="store_true", help="no task-sent events")
    parser.add_argument("--during", type=int, default=0, help="scrapes during renders")
    args = parser.parse_args(argv)
    for names in args.names or [1000]:
        result = run(names, args.queues, args.workers, args.rounds, not args.no_sent)
        if args.during:
            state = build_state(names, args.queues, args.workers, not args.no_sent)
            result["scrapes_during_render"] = during_render(state, args.during)
        print(json.dumps(result, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
