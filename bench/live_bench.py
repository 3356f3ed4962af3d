"""Whole-process cost of the exporter on a live cluster, beside its peers, in one run.

    python -m bench.live_bench                    # 3,000 tasks, 30 s idle window
    python -m bench.live_bench --small            # CI-sized smoke run (no peers)
    python -m bench.live_bench --flower CELERY_BIN --reference-python PY --reference-dir DIR
    python -m bench.live_bench --compat --only-full   # --compat danihodovic beside the default
    python -m bench.live_bench --baseline REV         # ours at commit REV beside the tree's
    python -m bench.live_bench --prefill 250000       # ours' ledger full before the window

One private redis-server is broker and result backend; one real prefork worker (`-c 2`,
`-E`) runs tests/app/tasks.py. Side by side, as separate processes watching the same
cluster: this exporter in four source combinations (everything on, `--results-pubsub
false`, `--events false`, both off), and, when given, Flower (`celery flower`, which keeps
Prometheus metrics from events) and danihodovic/celery-exporter (the reference). Each is
measured by its whole-process CPU time (user + system from /proc/<pid>/stat, every thread),
never by wall time:

- idle: CPU per second over `--idle-seconds` with the worker connected and nothing running;
- load: CPU from just before the first task is sent until `--tail-seconds` after the last
  result is stored, divided by the number of tasks; `--tasks` tasks, about 10% failing and
  10% retried once;
- RSS at the end.

`--threads` adds ours' CPU per task for each of its threads over the load window
(bench/threads.py: names from py-spy when it is installed); `--gc` the cyclic collector's
collections in ours during the load window, per generation, with their CPU (a probe loaded
into ours at start: bench/gcprobe).

Every process's /metrics is scraped every `--scrape-interval` seconds (15, as Prometheus
would; 0: never), during the idle window and the load alike.

`--prefill N` writes N stored results into the result backend before anything starts (the
JSON Celery's Redis backend writes, without task names, dated two days ago:
bench/stored_results.py). Ours reads them in its start-up reconcile pass, so its ledger holds
min(N, --ledger-max-tasks) entries, and with N above the bound (200,000 by default) it is full:
every task id of the window then evicts an old entry and moves one out of the warm window,
which is packed (exporter/ledger/packed.py). The worker starts only once every one of ours
has logged the end of that pass (it logs passes of 10,000 keys or more, so N is 0 or at
least that), released the results that waited --label-grace for a name, and scanned no key
for 3 s (a pub/sub reconnect during a long pass asks for one more pass). Then 100 warm-up
tasks run before the settle time, so that a one-off of the first ledger write after the
prefill lands outside the load window: before d4d5c37, when two-day-old nameless results
still waited --label-grace, the keeper's next save dropped the 50,000 ids they left saved
(~80 ms). Flower and the reference never read stored results: the prefill costs them
nothing.

The bench reads ours' /metrics itself in OpenMetrics, the format the scrapes do not use: each
format has its own render plan (exporter/exposition.py), and reads every 0.2-1 s would teach
the text format's a period other than the scrape interval's. For each of ours the report
gives, from the end of the warm-up to the end of the load window: ledger entries
(start, end: a body rendered after the window), evictions (no metric counts packs; at a full
ledger each new id evicts one entry and moves one out of the warm window) and completed
reconcile passes, with those logged inside the load window itself (the periodic one comes
300 s after start); and the CPU it spent from its start to the prefill's end (start-up and
that pass).

The machine may be loaded by other work: compare the ratios of one run, not absolute
figures across runs. Counts are checked exact for every configuration of ours that counts
tasks (every one but both-off before its first reconcile, which is after 300 s): what each
counted during the load window against what was sent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench import threads

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_CPU_PER_EVENT = 0.3e-3  # seconds, danihodovic/celery-exporter's published figure
TICK = os.sysconf("SC_CLK_TCK")
OURS = {
    "ours: everything on": [],
    "ours: --results-pubsub false": ["--results-pubsub", "false"],
    "ours: --events false": ["--events", "false"],
    "ours: both off": ["--results-pubsub", "false", "--events", "false"],
}
COMPAT = "ours: --compat danihodovic"  # with --compat: celery-exporter's families as well
COUNTED = ("succeeded", "failed", "retried")
# Ours' log line at the end of a complete pass, logged from 10 SCAN batches of keys on.
RECONCILE_DONE = "reconcile: done"
MIN_PREFILL = 10_000
WARMUP_TASKS = 100  # with --prefill, before the settle time


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the whole process (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def gc_in_window(
    p: Watched, start: float, end: float, tasks: int
) -> tuple[dict[str, list[float]], int]:
    """`--gc`: ours' collections between `start` and `end` (wall), from its probe's log
    (bench/gcprobe): per generation, [collections, their CPU in ms, us of it a task]; and
    how many collections the log holds in all (0: the probe was not loaded)."""
    out: dict[str, list[float]] = {}
    path = p.env.get("GC_PROBE_LOG")
    lines = Path(path).read_text().splitlines() if path and Path(path).exists() else []
    for line in lines:
        at, generation, spent, *_ = line.split()
        if start <= float(at) <= end:
            row = out.setdefault(f"gen{generation}", [0, 0.0, 0.0])
            row[0] += 1
            row[1] += float(spent) / 1e3
            row[2] += float(spent) / tasks
    return out, len(lines)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Watched:
    """One monitoring process watching the cluster, with its /metrics port."""

    name: str
    argv: list[str]
    port: int
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None
    figures: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        # Kept open for the process's lifetime and removed in stop(): no context manager fits.
        self.log = tempfile.NamedTemporaryFile(prefix="live-bench-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env={**os.environ, **self.env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def metrics(self, openmetrics: bool = False) -> str:
        """A /metrics body; `openmetrics`: the bench's own reads of ours, in the format the
        scrapes (text) do not use, so they leave the renderer's plan for the scrapes as it is
        (each format has its own, exporter/exposition.py)."""
        import httpx

        headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics else {}
        url = f"http://127.0.0.1:{self.port}/metrics"
        try:
            return httpx.get(url, headers=headers, timeout=5).text
        except httpx.HTTPError:
            return ""

    def logged(self, text: str) -> int:
        """How often `text` is in the process's output so far (reading it costs it nothing)."""
        return Path(self.log.name).read_text(errors="replace").count(text)

    def alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{Path(self.log.name).read_text()[-3000:]}")
        return True

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log is not None:
            os.unlink(self.log.name)


def families(text: str) -> Any:
    """The metric families of a text or OpenMetrics body."""
    if text.rstrip().endswith("# EOF"):
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families
    return text_string_to_metric_families(text)


def our_counts(text: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for family in families(text):
        for s in family.samples:
            for counter in COUNTED:
                if s.name == f"celery_task_{counter}_total":
                    out[counter] += int(s.value)
    return out


def send_tasks(app: Any, n: int, ids: list[str]) -> Counter[str]:
    """n tasks: every tenth fails, every tenth (another one) retries once; the truth. Their
    ids are appended to `ids`."""
    truth: Counter[str] = Counter()
    with app.producer_or_acquire() as producer:
        for i in range(n):
            if i % 10 == 3:
                sent = app.send_task("tests.fail_permanent", (), producer=producer)
                truth["failed"] += 1
            elif i % 10 == 7:
                sent = app.send_task("tests.retry_once", (i,), producer=producer)
                truth["retried"] += 1
                truth["succeeded"] += 1
            else:
                sent = app.send_task("tests.add", (i, 1), producer=producer)
                truth["succeeded"] += 1
            ids.append(sent.id)
    return truth


def all_stored(client: Any, ids: list[str]) -> Callable[[], bool]:
    """A condition: every one of `ids` has its final result stored. Reads only those keys
    (a prefilled backend holds many more), and each only until it is final."""
    pending = list(ids)

    def done() -> bool:
        nonlocal pending
        still = []
        for start in range(0, len(pending), 1000):
            chunk = pending[start : start + 1000]
            raws = client.mget([f"celery-task-meta-{t}" for t in chunk])
            for tid, raw in zip(chunk, raws, strict=True):
                if not raw or json.loads(raw).get("status") not in ("SUCCESS", "FAILURE"):
                    still.append(tid)
        pending = still
        return not pending

    return done


def sample(text: str, name: str) -> float | None:
    """The value of an unlabelled sample in a /metrics body (None: not there)."""
    for family in families(text):
        for s in family.samples:
            if s.name == name and not s.labels:
                return float(s.value)
    return None


LEDGER = {
    "entries": "celery_exporter_ledger_entries",
    "evictions": "celery_exporter_ledger_evictions_total",
    "reconcile_runs": "celery_exporter_reconcile_runs_total",
    "label_pending": "celery_exporter_label_pending_tasks",
    "keys_scanned": "celery_exporter_reconcile_keys_scanned_total",
}


def ledger_figures(text: str) -> dict[str, float | None]:
    return {key: sample(text, name) for key, name in LEDGER.items()}


def rendered_since(p: Watched, t: float) -> str:
    """A /metrics body of p rendered after monotonic time t (bodies are rendered ahead of the
    expected scrape, exporter/exposition.py), polled with a deadline."""
    body = ""

    def fresh() -> bool:
        nonlocal body
        body = p.metrics(openmetrics=True)
        age = sample(body, "celery_exporter_metrics_render_age_seconds")
        return age is not None and age < time.monotonic() - t

    wait(fresh, 60, f"{p.name} /metrics rendered after the window")
    return body


def quiet(p: Watched, polls: int = 3) -> Callable[[], bool]:
    """A condition, to poll every second: ours has completed a reconcile pass, holds no
    result waiting for a name, and scanned no key over the last `polls` reads (no pass runs:
    a pub/sub reconnect asks for one more, sources/results.py)."""
    scanned: list[float | None] = []

    def done() -> bool:
        f = ledger_figures(p.metrics(openmetrics=True))
        scanned.append(f["keys_scanned"])
        settled = (f["reconcile_runs"] or 0) >= 1 and f["label_pending"] == 0
        return settled and len(scanned) >= polls and len(set(scanned[-polls:])) == 1

    return done


def wait(cond: Any, timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def checkout(rev: str, into: Path) -> Path:
    """The tree of `rev` (a commit of this repository), unpacked under `into`: `--baseline`
    runs that code beside the working tree's, before and after a change in one run."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def watched(args: argparse.Namespace, url: str, baseline: Path | None = None) -> list[Watched]:
    from tests.support.common import free_port

    procs = []
    ours = dict(list(OURS.items())[:1] if args.only_full else OURS)
    if args.compat:
        ours[COMPAT] = ["--compat", "danihodovic"]
    trees = [(ROOT, "")] + ([(baseline, f" @{args.baseline}")] if baseline else [])
    for tree, suffix in trees:
        for name, extra in ours.items():
            port = free_port()
            argv = [sys.executable, "-m", "exporter", "--broker-url", url, "--result-backend", url]
            argv += ["--instance", f"live{len(procs)}", "--host", "127.0.0.1", "--port", str(port)]
            env = {"PYTHONPATH": str(tree)}
            if args.gc:  # (the probe's sitecustomize first on the path: bench/gcprobe)
                env["PYTHONPATH"] = f"{ROOT / 'bench' / 'gcprobe'}{os.pathsep}{tree}"
                env["GC_PROBE_LOG"] = str(Path(args.gc_dir) / f"live{len(procs)}.gc")
            procs.append(Watched(name + suffix, [*argv, *extra], port, cwd=tree, env=env))
    return procs + peers(args, url)


def peers(args: argparse.Namespace, url: str) -> list[Watched]:
    """Flower and danihodovic/celery-exporter, where their executables were given."""
    from tests.support.common import free_port

    procs = []
    if args.flower:
        port = free_port()
        argv = [args.flower, "--broker", url, "flower", "--address=127.0.0.1", f"--port={port}"]
        procs.append(Watched("Flower", argv, port, cwd=Path(tempfile.gettempdir())))
    if args.reference_python and args.reference_dir:
        port = free_port()
        argv = [args.reference_python, "cli.py", "--broker-url", url, "--port", str(port)]
        argv += ["--host", "127.0.0.1"]
        procs.append(Watched("danihodovic/celery-exporter", argv, port, Path(args.reference_dir)))
    return procs


def scrape_all(procs: list[Watched], interval: float, stop: threading.Event) -> None:
    """Scrape every process's /metrics every `interval` seconds until `stop`."""
    while not stop.is_set():
        for p in procs:
            p.metrics()
        stop.wait(interval)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import redis

    from tests.support.redisserver import RedisServer
    from tests.support.workers import Worker, celery_app

    server = RedisServer()
    server.start()
    url = f"{server.url}/0"
    if args.prefill:
        from bench.stored_results import fill

        t0 = time.monotonic()
        # Well in the past: older than anything the window sends, as after a restart.
        fill(url, args.prefill, datetime.now(timezone.utc) - timedelta(days=2), flush=False)
        print(f"live: {args.prefill} stored results written in {time.monotonic() - t0:.0f}s")
    env = {"TEST_BROKER_URL": url, "TEST_BACKEND_URL": url}
    scratch = tempfile.TemporaryDirectory(prefix="live-bench-")
    args.gc_dir = scratch.name  # (--gc: the probes' logs)
    baseline = checkout(args.baseline, Path(scratch.name)) if args.baseline else None
    procs = watched(args, url, baseline)
    stop = threading.Event()
    worker: Worker | None = None
    try:
        for p in procs:
            p.start()
        for p in procs:
            wait(lambda p=p: p.alive() and bool(p.metrics()), 300, f"{p.name} /metrics")
        ours = [p for p in procs if p.name.startswith("ours")]
        if args.prefill:
            for p in ours:
                what = f"{p.name}'s start-up reconcile of {args.prefill} results"
                done = lambda p=p: p.alive() and p.logged(RECONCILE_DONE) > 0  # noqa: E731
                wait(done, 120 + args.prefill / 1000, what)
            for p in ours:
                wait(quiet(p), 120, f"{p.name} settled after its reconcile", every=1.0)
                p.figures["cpu_s_before"] = p.cpu()
        worker = Worker(env, concurrency=args.concurrency, extra=("-E",)).wait_ready()
        app = celery_app(env)
        client = redis.Redis.from_url(url)
        if args.prefill:
            # A few tasks first: a one-off of the first ledger write after the prefill (a
            # keeper save, see the module docstring) falls in the settle time, not the window.
            base = {p.name: our_counts(p.metrics(openmetrics=True)) for p in ours}
            warm_ids: list[str] = []
            warm = send_tasks(app, WARMUP_TASKS, warm_ids)
            wait(all_stored(client, warm_ids), 60, "the warm-up tasks' results")
            for p in ours:
                if not p.name.startswith("ours: both off"):

                    def warmed(p: Watched = p) -> bool:
                        return our_counts(p.metrics(openmetrics=True)) - base[p.name] == warm

                    wait(warmed, 30, f"{p.name} counting the warm-up")
        # Ours' ledger and counts before the settle time (read in OpenMetrics).
        start = {}
        for p in ours:
            body = p.metrics(openmetrics=True)
            start[p.name] = (ledger_figures(body), our_counts(body))
        if args.scrape_interval > 0:  # as Prometheus does: every process, every interval
            threading.Thread(
                target=scrape_all, args=(procs, args.scrape_interval, stop), daemon=True
            ).start()
        time.sleep(args.settle_seconds)  # discovery, first polls and reconciles, imports
        idle0 = {p.name: p.cpu() for p in procs}
        t0 = time.monotonic()
        time.sleep(args.idle_seconds)
        idle_wall = time.monotonic() - t0
        for p in procs:
            p.figures["idle_ms_per_s"] = (p.cpu() - idle0[p.name]) / idle_wall * 1e3
        passes0 = {p.name: p.logged(RECONCILE_DONE) for p in ours}
        load0 = {p.name: p.cpu() for p in procs}
        per0 = {p.name: threads.sample(p.proc.pid) for p in ours if args.threads and p.proc}
        wall0 = time.time()
        t0 = time.monotonic()
        ids: list[str] = []
        truth = send_tasks(app, args.tasks, ids)
        wait(all_stored(client, ids), 60 + args.tasks / 10, "all results")
        drained = time.monotonic() - t0
        time.sleep(args.tail_seconds)
        for p in procs:
            p.alive()
            spent = p.cpu() - load0[p.name]
            p.figures.update(
                cpu_s=spent,
                cpu_ms_per_task=spent / args.tasks * 1e3,
                rss_mb=rss_mb(p.proc.pid) if p.proc else 0.0,
            )
        t_end = time.monotonic()
        if args.gc:
            for p in ours:
                p.figures["gc"], p.figures["gc_logged"] = gc_in_window(
                    p, wall0, wall0 + (t_end - t0), args.tasks
                )
        for p in ours:
            if p.name in per0 and p.proc:
                wall = t_end - t0
                rows = threads.per_thread(
                    per0[p.name], threads.sample(p.proc.pid), wall, threads.names(p.proc.pid)
                )  # (ms/s over the window, as ms per task below)
                p.figures["threads"] = [
                    (n, cpu * wall / args.tasks, w * wall / args.tasks) for n, cpu, w in rows
                ]
        for p in ours:
            passes = p.logged(RECONCILE_DONE) - passes0[p.name]
            before, after = start[p.name][0], ledger_figures(rendered_since(p, t_end))
            p.figures["ledger"] = {
                "label_pending_start": before["label_pending"],
                "entries_start": before["entries"],
                "entries_end": after["entries"],
                "evictions": (after["evictions"] or 0) - (before["evictions"] or 0),
                "reconcile_runs": (after["reconcile_runs"] or 0) - (before["reconcile_runs"] or 0),
                "logged_passes_in_window": passes,
            }
        for p in ours:
            if not p.name.startswith("ours: both off"):
                # Exact once every source caught up; the reconcile-only one is not waited for.
                def counted(p: Watched = p) -> dict[str, int]:
                    now, then = our_counts(p.metrics(openmetrics=True)), start[p.name][1]
                    return {k: now[k] - then[k] for k in now if now[k] != then[k]}

                with contextlib.suppress(RuntimeError):
                    wait(lambda counted=counted: counted() == truth, 30, f"{p.name} counts")
                p.figures["counts"] = counted()
                p.figures["counts_exact"] = p.figures["counts"] == dict(truth)
        report: dict[str, Any] = {
            "tasks": args.tasks,
            "truth": dict(truth),
            "drained_s": drained,
            "idle_s": idle_wall,
            "tail_s": args.tail_seconds,
            "concurrency": args.concurrency,
            "prefill": args.prefill,
            "processes": {p.name: p.figures for p in procs},
        }
        full = report["processes"]["ours: everything on"]
        for p in procs:
            if not p.name.startswith("ours") and p.figures["cpu_ms_per_task"]:
                p.figures["ours_cheaper_x"] = p.figures["cpu_ms_per_task"] / max(
                    full["cpu_ms_per_task"], 1e-9
                )
        report["scrape_interval"] = args.scrape_interval
        return report
    finally:
        stop.set()
        if worker is not None:
            worker.stop()
        for p in procs:
            p.stop()
        server.cleanup()
        scratch.cleanup()


def show(report: dict[str, Any]) -> None:
    print(
        f"live: {report['tasks']} tasks {report['truth']}, drained in {report['drained_s']:.1f}s,"
        f" idle window {report['idle_s']:.0f}s, tail {report['tail_s']:.0f}s,"
        f" {report['prefill']} stored results prefilled"
    )
    print(f"{'process':34} {'idle ms/s':>9} {'CPU s':>7} {'ms/task':>8} {'RSS MB':>7}  notes")
    for name, f in report["processes"].items():
        notes = []
        if "counts_exact" in f:
            notes.append("counts exact" if f["counts_exact"] else f"counts {f['counts']}")
        if "ours_cheaper_x" in f:
            notes.append(f"ours (everything on) {f['ours_cheaper_x']:.1f}x cheaper")
        print(
            f"{name:34} {f['idle_ms_per_s']:9.2f} {f['cpu_s']:7.2f} {f['cpu_ms_per_task']:8.3f}"
            f" {f['rss_mb']:7.1f}  {'; '.join(notes)}"
        )
    for name, f in report["processes"].items():
        if "ledger" in f:
            led = f["ledger"]
            before = f.get("cpu_s_before")
            print(
                f"{name:34} ledger {_n(led['entries_start'])} -> {_n(led['entries_end'])} entries,"
                f" {led['evictions']:.0f} evicted, {led['reconcile_runs']:.0f} reconcile passes"
                f" (from the worker's start; {led['logged_passes_in_window']} in the load window),"
                f" {_n(led['label_pending_start'])} waiting for a name at the start"
                + (f"; {before:.2f} s CPU from start to the prefill's end" if before else "")
            )
    for name, f in report["processes"].items():
        if f.get("threads"):
            print(f"{name}, per thread over the load window (schedstat), per task:")
            print(f"  {'thread':40} {'CPU ms':>8} {'wake-ups':>8}")
            for thread, ms, woke in f["threads"]:
                if ms >= 0.0005:
                    print(f"  {thread:40} {ms:8.4f} {woke:8.3f}")
    for name, f in report["processes"].items():
        if "gc" in f:
            rows = ", ".join(
                f"{g}: {n:.0f} in {ms:.1f} ms ({us:.1f} us a task)"
                for g, (n, ms, us) in sorted(f["gc"].items())
            )
            print(f"{name}, collections in the load window: {rows or 'none'}")
    full = report["processes"]["ours: everything on"]
    compat = report["processes"].get(COMPAT)
    if compat:
        per_task = compat["cpu_ms_per_task"] / max(full["cpu_ms_per_task"], 1e-9)
        idle = compat["idle_ms_per_s"] / max(full["idle_ms_per_s"], 1e-9)
        print(
            f"live: --compat danihodovic costs {per_task:.2f}x the default's CPU per task, "
            f"{idle:.2f}x its idle CPU"
        )
    ours = full["cpu_ms_per_task"]
    # A task makes about 5 events here (sent, received, started, succeeded/failed; retried).
    reference = REFERENCE_CPU_PER_EVENT * 1e3 * 5
    print(
        f"live: the reference's published ~0.3 ms CPU per event is ~{reference:.1f} ms per task"
        f" (5 events each): ours {ours:.3f} ms/task, {reference / max(ours, 1e-9):.1f}x cheaper"
    )


def _n(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.live_bench")
    parser.add_argument("--small", action="store_true", help="CI-sized run (40 tasks, short)")
    parser.add_argument("--tasks", type=int, default=None, help="tasks sent (default 3000)")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork worker -c")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle window (30)")
    parser.add_argument("--tail-seconds", type=float, default=None, help="after drain (8)")
    parser.add_argument("--settle-seconds", type=float, default=None, help="before idle (15)")
    parser.add_argument(
        "--scrape-interval", type=float, default=15.0, help="scrape /metrics this often (0: never)"
    )
    parser.add_argument("--baseline", help="also run ours from this commit, side by side")
    parser.add_argument("--flower", help="a `celery` executable with flower installed")
    parser.add_argument("--reference-python", help="python of a celery-exporter venv")
    parser.add_argument("--reference-dir", help="a danihodovic/celery-exporter checkout")
    parser.add_argument("--compat", action="store_true", help="add ours with --compat danihodovic")
    parser.add_argument(
        "--threads", action="store_true", help="ours' CPU per thread (names need py-spy)"
    )
    parser.add_argument(
        "--gc", action="store_true", help="ours' cyclic-GC collections (bench/gcprobe)"
    )
    parser.add_argument(
        "--only-full", action="store_true", help="of ours, only everything on (and --compat)"
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="stored results written into the backend before the exporters start (default 0;"
        f" 250000 fills ours' default 200,000-entry ledger before the window; at least"
        f" {MIN_PREFILL}, which ours logs the end of)",
    )
    args = parser.parse_args(argv)
    if 0 < args.prefill < MIN_PREFILL:
        parser.error(f"--prefill takes 0 or at least {MIN_PREFILL}")
    small = args.small
    args.tasks = args.tasks or (40 if small else 3000)
    args.idle_seconds = args.idle_seconds if args.idle_seconds is not None else (2 if small else 30)
    args.tail_seconds = args.tail_seconds if args.tail_seconds is not None else (1 if small else 8)
    if args.settle_seconds is None:
        args.settle_seconds = 2 if small else 15
    report = run(args)
    show(report)
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
