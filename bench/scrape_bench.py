"""Scrape latency of GET /metrics while the cluster is slow to answer inspect.

Drives the real `Poller` and the real HTTP app served by uvicorn in a thread, with a
`ClusterReader` whose `inspect()` takes `--inspect-delay` seconds (a plain class returning
realistic replies for 3 workers and 5 queues), polling back to back so an inspect is always
in flight. Side by side, a second app that does the inspect inside the scrape, as
danihodovic/celery-exporter effectively does, through the same HTTP stack.

    python -m bench.scrape_bench            # full run: 2,000 scrapes, inspect 2 s
    python -m bench.scrape_bench --small    # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from exporter.cluster import DepthReply, InspectReply, QueueDepth, QueueHead
from exporter.collectors import build_registry
from exporter.config import Config
from exporter.http import create_app
from exporter.poller import Poller
from exporter.state import State

WORKERS = tuple(f"celery@worker-{i}" for i in range(1, 4))
QUEUES = ("default", "emails", "reports", "priority", "batch")
TASKS = ("app.send_email", "app.render_report", "app.sync_account", "app.cleanup")


def _request(task_id: str, name: str, host: str, queue: str, started: float) -> dict[str, Any]:
    return {
        "id": task_id,
        "name": name,
        "args": [1, "x"],
        "kwargs": {},
        "type": name,
        "hostname": host,
        "time_start": started,
        "acknowledged": True,
        "delivery_info": {
            "exchange": "",
            "routing_key": queue,
            "priority": 0,
            "redelivered": False,
        },
        "worker_pid": 4242,
    }


def realistic_inspect(now: float) -> InspectReply:
    """What `inspect` returns for 3 prefork workers, each busy and holding a few tasks."""
    stats, queues, active, reserved, scheduled = {}, {}, {}, {}, {}
    for w, host in enumerate(WORKERS):
        stats[host] = {
            "pid": 100 + w,
            "pool": {"max-concurrency": 4, "processes": [200 + w * 4 + i for i in range(4)]},
            "total": {name: 1000 * (w + 1) + i for i, name in enumerate(TASKS)},
            "broker": {"hostname": "redis", "port": 6379, "transport": "redis"},
            "prefetch_count": 16,
            "rusage": {"utime": 12.5, "stime": 3.1, "maxrss": 81234},
        }
        queues[host] = [
            {"name": q, "exchange": {"name": q, "type": "direct"}, "routing_key": q} for q in QUEUES
        ]
        active[host] = [
            _request(f"a-{w}-{i}", TASKS[i % 4], host, QUEUES[i], now - 3 * i) for i in range(4)
        ]
        reserved[host] = [
            _request(f"r-{w}-{i}", TASKS[i % 4], host, QUEUES[i % 5], 0.0) for i in range(3)
        ]
        scheduled[host] = [
            {"eta": "2030-01-01T00:00:00+00:00", "priority": 6, "request": req}
            for req in (_request(f"s-{w}-{i}", TASKS[0], host, "emails", 0.0) for i in range(2))
        ]
    replies = {
        "stats": stats,
        "active_queues": queues,
        "active": active,
        "reserved": reserved,
        "scheduled": scheduled,
    }
    return InspectReply(replies=replies)


class SlowReader:
    """A ClusterReader whose inspect takes `delay` seconds, like a busy cluster's broadcast."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def inspect(self, timeout: float, expected: int | None = None) -> InspectReply:
        time.sleep(self.delay)
        return realistic_inspect(time.time())

    def depths(self, queues: list[str]) -> DepthReply:
        return DepthReply(
            queues={
                q: QueueDepth(q, 10 * (i + 1), None, (QueueHead(f"h-{q}", f"tag-{q}"),))
                for i, q in enumerate(queues)
            },
            unacked=15,
        )

    def close(self) -> None:
        pass


class _Server(uvicorn.Server):
    """uvicorn in a thread: signals stay with the main thread."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    # Bound as the daemon binds (IPPROTO_TCP, so asyncio turns on TCP_NODELAY).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)  # start-up wait with a deadline
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def in_scrape_app(state: State, poller: Poller) -> FastAPI:
    """/metrics that polls the cluster first, then renders: the inspect is on the scrape path."""
    app = FastAPI()
    registry = build_registry(state)

    @app.get("/metrics")
    def metrics() -> Response:
        poller.poll()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def scrape(url: str, n: int) -> list[float]:
    """Latencies in seconds of n sequential GET /metrics on one keep-alive connection."""
    out: list[float] = []
    # TCP_NODELAY as Prometheus' Go client has it; without it, keep-alive requests wait out
    # the peer's delayed ACK (about 40 ms each) and the figure measures the kernel.
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(timeout=60, transport=transport) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            resp = client.get(url + "/metrics")
            out.append(time.perf_counter() - t0)
            resp.raise_for_status()
    return out


def percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "n": len(ordered),
        "p50": statistics.median(ordered),
        "p90": pick(0.90),
        "p99": pick(0.99),
        "max": ordered[-1],
    }


def _fmt(label: str, p: dict[str, float]) -> str:
    ms = {k: v * 1000 for k, v in p.items() if k != "n"}
    return (
        f"{label:<28} n={int(p['n']):<5} p50={ms['p50']:9.2f} ms  p90={ms['p90']:9.2f} ms  "
        f"p99={ms['p99']:9.2f} ms  max={ms['max']:9.2f} ms"
    )


def run(scrapes: int, in_scrape: int, delay: float) -> dict[str, Any]:
    config = Config(queues=QUEUES, poll_interval=max(delay, 0.1), inspect_timeout=delay)
    state = State(config)
    poller = Poller(state, SlowReader(delay))
    poller.poll()  # values exist before the first scrape, as after /-/ready
    stop = threading.Event()

    def poll_forever() -> None:
        # Back to back: an inspect is in flight for nearly every scrape (the worst case).
        while not stop.is_set():
            poller.poll()

    background = threading.Thread(target=poll_forever, daemon=True)
    background.start()
    try:
        with serve(create_app(state, None, api=False)) as url:
            body = httpx.get(url + "/metrics", timeout=10).text
            snapshot = scrape(url, scrapes)
    finally:
        stop.set()
        background.join(delay + 5)
    # Same state type, a private poller: every scrape waits for its own inspect.
    state2 = State(config)
    with serve(in_scrape_app(state2, Poller(state2, SlowReader(delay)))) as url:
        inline = scrape(url, in_scrape)
    return {
        "snapshot": percentiles(snapshot),
        "in_scrape": percentiles(inline),
        "body": body,
        "delay": delay,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick smoke run")
    parser.add_argument("--scrapes", type=int, default=None, help="scrapes of /metrics")
    parser.add_argument("--in-scrape", type=int, default=None, help="scrapes with inline inspect")
    parser.add_argument("--inspect-delay", type=float, default=None, help="seconds per inspect")
    args = parser.parse_args(argv)
    scrapes = args.scrapes or (100 if args.small else 2000)
    inline = args.in_scrape or (3 if args.small else 10)
    delay = args.inspect_delay if args.inspect_delay is not None else (0.2 if args.small else 2.0)
    result = run(scrapes, inline, delay)
    snap, inl = result["snapshot"], result["in_scrape"]
    ratio = inl["p50"] / snap["p50"]
    result["ratio_p50"] = ratio
    print(
        f"GET /metrics through uvicorn+FastAPI; {len(WORKERS)} workers, {len(QUEUES)} queues, "
        f"inspect takes {delay:.2f} s and is always in flight"
    )
    print(_fmt("snapshot (this exporter)", snap))
    print(_fmt("inspect inside the scrape", inl))
    print(f"p50 ratio inspect-in-scrape / snapshot: {ratio:,.0f}x")
    return result


if __name__ == "__main__":
    main()
