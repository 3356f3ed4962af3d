"""What a scrape costs as the cluster grows: task names, queues and workers.

Two real exporter processes listen to one private Redis broker: one renders /metrics ahead
of scrapes (the default, `--metrics-render-interval 1`), one renders on every scrape
(`--metrics-render-interval 0`, the old path). Real Celery event messages (EventDispatcher,
as workers send them) describe `names` task names over `queues` queues and `workers`
workers, 3 tasks per name, with task-sent events so every queue is known. Then each exporter
is scraped the way Prometheus scrapes: one keep-alive connection, `Accept-Encoding: gzip`,
the OpenMetrics accept header. Reported per exporter: latency p50/p90/p99, bytes on the
wire and uncompressed, samples, the exporter's CPU per scrape, and for the ready path the
render CPU per change (a trickle of events while nobody scrapes). The API's per-name and
per-worker JSON (`/api/sitrep`, `/api/tasks/recent`) is timed at the same size.

    python -m bench.scrape_size_bench                       # 10, 1,000 and 5,000 names
    python -m bench.scrape_size_bench --names 1000 --scrapes 100
    python -m bench.scrape_size_bench --small               # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from tests.support.common import ROOT, free_port, wait_for
from tests.support.redisserver import RedisServer

OM_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
)
VIEWER = "bench-viewer-token-0123456789abcdef"


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Exporter:
    def __init__(self, broker: str, names: int, interval: float) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "exporter",
            "--broker-url",
            broker,
            "--result-backend",
            "",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-task-names",
            str(max(500, names * 2)),
            "--metrics-render-interval",
            str(interval),
            "--log-level",
            "WARNING",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CE_")}
        env.update(PYTHONPATH=str(ROOT), CE_VIEWER_TOKENS=VIEWER)
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        self.client = httpx.Client(base_url=self.base, timeout=120)
        wait_for(self._serving, 30, interval=0.1, what="exporter serving")

    def _serving(self) -> bool:
        try:
            return self.client.get("/-/healthy").status_code == 200
        except httpx.HTTPError:
            return False

    def task_events(self) -> float:
        """Task events the exporter has taken in (its own counter, any render's page)."""
        text = self.client.get("/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith('celery_exporter_events_received_total{type="task-')
        )

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(20)


def publish(broker: str, names: int, queues: int, workers: int, per_name: int = 3) -> int:
    """Real event messages for names x per_name tasks; returns the number of tasks."""
    from exporter.celery_io import CeleryIO
    from exporter.config import Config

    app = CeleryIO(Config(broker_url=broker)).app
    tasks = 0
    with app.connection_for_write() as conn:
        producer = app.events.Dispatcher(conn, hostname="producer@bench", enabled=True)
        hosts = [
            app.events.Dispatcher(conn, hostname=f"celery@worker-{w}", enabled=True)
            for w in range(workers)
        ]
        for host in hosts:
            host.send("worker-online", freq=2.0, sw_ident="py-celery", sw_ver="5", sw_sys="Linux")
        for n in range(names):
            name = f"bench.app{n % 7}.tasks.task_{n}"
            queue = f"queue-{n % queues}"
            for i in range(per_name):
                task_id = str(uuid.uuid4())
                worker = hosts[(n * per_name + i) % workers]
                producer.send(
                    "task-sent", uuid=task_id, name=name, queue=queue, routing_key=queue,
                    exchange="", args="()", kwargs="{}", retries=0, eta=None, expires=None,
                    root_id=task_id, parent_id=None,
                )  # fmt: skip
                received = {"args": "()", "kwargs": "{}", "retries": 0, "eta": None,
                            "expires": None, "root_id": task_id, "parent_id": None}  # fmt: skip
                worker.send("task-received", uuid=task_id, name=name, **received)
                worker.send("task-started", uuid=task_id)
                if i == per_name - 1 and n % 10 == 0:
                    worker.send("task-failed", uuid=task_id, exception="ValueError('x')",
                                traceback="Traceback ...")  # fmt: skip
                else:
                    worker.send("task-succeeded", uuid=task_id, result="1", runtime=0.01 * i)
                tasks += 1
        for d in (producer, *hosts):
            d.flush()
            d.close()
    return tasks


def trickle(broker: str, count: int, every: float) -> None:
    from exporter.celery_io import CeleryIO
    from exporter.config import Config

    app = CeleryIO(Config(broker_url=broker)).app
    with app.connection_for_write() as conn:
        d = app.events.Dispatcher(conn, hostname="celery@worker-0", enabled=True)
        for _ in range(count):
            task_id = str(uuid.uuid4())
            d.send("task-received", uuid=task_id, name="bench.app0.tasks.task_0", args="()",
                   kwargs="{}", retries=0, eta=None, expires=None, root_id=task_id,
                   parent_id=None)  # fmt: skip
            d.send("task-succeeded", uuid=task_id, result="1", runtime=0.01)
            d.flush()
            time.sleep(every)
        d.close()


def _quantiles(latencies: list[float]) -> dict[str, float]:
    q = (
        statistics.quantiles(latencies, n=100, method="inclusive")
        if len(latencies) > 1
        else latencies * 99
    )
    return {
        "p50_ms": q[49] * 1e3,
        "p90_ms": q[89] * 1e3,
        "p99_ms": q[98] * 1e3,
        "max_ms": max(latencies) * 1e3,
    }


def _get_raw(exp: Exporter, headers: dict[str, str]) -> bytes:
    """The body as sent (gzip), not decompressed: the time is the exporter's, not the time
    this process takes to inflate 5-25 MB (Prometheus does that on its own cores)."""
    with exp.client.stream("GET", "/metrics", headers=headers) as r:
        return b"".join(r.iter_raw())


def scrape(exp: Exporter, n: int) -> dict[str, Any]:
    headers = {"Accept": OM_ACCEPT, "Accept-Encoding": "gzip"}
    latencies: list[float] = []
    wire = plain = samples = 0
    # The first scrape of a format renders it inline, once in the exporter's life (the
    # bench's own reads so far asked for the text format): not a steady-state scrape.
    _get_raw(exp, headers)
    cpu0 = _cpu(exp.proc.pid)
    for _ in range(n):
        started = time.perf_counter()
        raw = _get_raw(exp, headers)
        latencies.append(time.perf_counter() - started)
        wire = len(raw)
        if not samples:
            text = gzip.decompress(raw)
            plain = len(text)
            samples = sum(1 for line in text.splitlines() if line and line[:1] != b"#")
    cpu = _cpu(exp.proc.pid) - cpu0
    return {
        **_quantiles(latencies),
        "wire_bytes": wire,
        "plain_bytes": plain,
        "samples": samples,
        "cpu_ms_per_scrape": cpu / n * 1e3,
    }


def series(exp: Exporter) -> set[str]:
    """The page's sample keys (name and labels, no value)."""
    text = gzip.decompress(_get_raw(exp, {"Accept": OM_ACCEPT, "Accept-Encoding": "gzip"}))
    return {
        line.rsplit(b" ", 1)[0].decode() for line in text.splitlines() if line and line[:1] != b"#"
    }


def scrape_while(busy: threading.Thread, exp: Exporter, gap: float = 0.02) -> dict[str, Any]:
    """Scrapes, `gap` apart, for as long as `busy` runs (changes arrive, so renders run):
    the tail is what a scrape served while a render holds the GIL pays."""
    headers = {"Accept": OM_ACCEPT, "Accept-Encoding": "gzip"}
    latencies: list[float] = []
    busy.start()
    while busy.is_alive():
        started = time.perf_counter()
        _get_raw(exp, headers)
        latencies.append(time.perf_counter() - started)
        time.sleep(gap)
    busy.join()
    return {**_quantiles(latencies), "scrapes": len(latencies)}


def _render_counters(exp: Exporter) -> tuple[float, float]:
    text = exp.client.get("/metrics", headers={"Accept": OM_ACCEPT}).text
    values = dict(line.split(" ", 1) for line in text.splitlines() if line[:1] != "#")
    return (
        float(values["celery_exporter_metrics_renders_total"]),
        float(values["celery_exporter_metrics_render_cpu_seconds_total"]),
    )


def api_sizes(exp: Exporter, n: int = 20) -> dict[str, Any]:
    """The API's per-name and per-worker JSON at this size: bytes, and latency of n calls."""
    out: dict[str, Any] = {}
    auth = {"Authorization": f"Bearer {VIEWER}", "Accept-Encoding": "identity"}
    for path in ("/api/sitrep", "/api/tasks/recent"):
        latencies: list[float] = []
        for _ in range(n):
            started = time.perf_counter()
            r = exp.client.get(path, headers=auth)
            latencies.append(time.perf_counter() - started)
        out[path] = {"status": r.status_code, "bytes": len(r.content), **_quantiles(latencies)}
        if path == "/api/sitrep" and r.status_code == 200:
            body = r.json()
            out[path]["lists"] = {k: len(v) for k, v in body.items() if isinstance(v, list)}
    return out


def run(
    names: int, queues: int, workers: int, scrapes: int, old_scrapes: int, changes: int = 20
) -> dict[str, Any]:
    server = RedisServer()
    server.start()
    broker = f"{server.url}/0"
    ready = old = None
    try:
        ready = Exporter(broker, names, 1.0)
        old = Exporter(broker, names, 0.0)
        time.sleep(1.0)  # both subscribed before the first event
        tasks = publish(broker, names, queues, workers)
        # Every event taken in by both (publish sends four per task), so both pages hold the
        # same series (waiting for most successes once let the pages differ by 4 samples).
        for exp in (ready, old):
            wait_for(lambda e=exp: e.task_events() >= 4 * tasks, 300, interval=0.5)
        time.sleep(2.5)  # the ready path re-rendered after the last change
        result: dict[str, Any] = {"names": names, "queues": queues, "workers": workers}
        result["ready"] = scrape(ready, scrapes)
        result["per_scrape"] = scrape(old, old_scrapes)
        result["series_only_in"] = {
            "ready": sorted(series(ready) - series(old))[:20],
            "per_scrape": sorted(series(old) - series(ready))[:20],
        }
        # Render CPU per change, from the renderer's own counters: changes 1.5 s apart,
        # scraped meanwhile (a scrape that lands during a render waits for the GIL).
        renders0, cpu0 = _render_counters(ready)
        busy = threading.Thread(target=trickle, args=(broker, changes, 1.5))
        result["ready_during_renders"] = scrape_while(busy, ready)
        renders, cpu = _render_counters(ready)
        result["ready"]["renders_during_trickle"] = renders - renders0
        result["ready"]["render_cpu_ms"] = (cpu - cpu0) / max(1, renders - renders0) * 1e3
        result["api"] = api_sizes(ready)
        result["p50_ratio"] = result["per_scrape"]["p50_ms"] / max(1e-9, result["ready"]["p50_ms"])
        return result
    finally:
        for exp in (ready, old):
            if exp is not None:
                exp.stop()
        server.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape_size_bench")
    parser.add_argument("--small", action="store_true", help="smoke run: 10 names")
    parser.add_argument("--names", type=int, action="append", help="task names (repeatable)")
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--scrapes", type=int, default=100, help="scrapes of the ready path")
    parser.add_argument(
        "--old-scrapes", type=int, default=20, help="scrapes of the render-per-scrape path"
    )
    args = parser.parse_args(argv)
    sizes = args.names or ([10] if args.small else [10, 1000, 5000])
    if args.small:
        args.scrapes, args.old_scrapes, args.workers, args.queues = 10, 5, 3, 2
    for names in sizes:
        result = run(names, args.queues, args.workers, args.scrapes, args.old_scrapes)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
