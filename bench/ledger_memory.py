"""Ledger memory: RSS after 1M tasks and after a 1M-result reconcile, and what each part costs.

    python -m bench.ledger_memory                    # both, full size
    python -m bench.ledger_memory --only tasks       # 1M tasks through the ledger
    python -m bench.ledger_memory --only reconcile   # a reconcile of 1M stored results
    python -m bench.ledger_memory --small            # CI-sized smoke run
    python -m bench.ledger_memory --tree PATH        # import exporter from another checkout
    python -m bench.ledger_memory --rate 1000        # the ledger's clock at 1,000 tasks/s

Each figure comes from a fresh child process that does nothing else (the exporter is its own
process in reality): the reconcile child does not fill Redis, this parent does. The tasks
workload is `bench.ledger_bench`'s RSS one (received with a name and no queue, started,
succeeded, all from events, so each task waits out --label-grace for a queue no source
names: what a cluster without task-sent events and without result_extended sends);
`--distinct-times` gives each event its own timestamp, as a real stream does (the default
shares one float object between every task, as the recorded figures always did). Replayed
flat out (~22,000 tasks/s), 5 s of tasks is more than the grace store's bound of 50,000 ids,
so it stays full; `--rate` moves the ledger's clock as if the tasks came at that rate.
`--batch N` hands the ledger N updates per `apply_many`, as the event consumer does with
what it read in one wake-up (they then share one settle time), instead of one per call.
`--late N` has the result pub/sub report each task's success again N tasks later (a second
source's duplicate: a packed entry it reaches is unpacked, exporter/ledger/packed.py).

Parts are counted by walking the ledger's tables with `sys.getsizeof`, each object once (a
float or string shared by two fields counts in the first part that holds it), small objects
rounded up to pymalloc's 16-byte size classes (a float takes 32 B, a 36-character id 96 B);
they leave out free blocks and unused pools, which `pymalloc_*` shows and RSS includes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.stored_results import fill, task_id

FULL = {"tasks": 1_000_000, "reconcile": 1_000_000}
SMALL = {"tasks": 20_000, "reconcile": 5_000}
ROOT = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def _state(clock: Any = None, **cfg: Any) -> Any:
    from exporter.config import Config
    from exporter.state import State

    return State(Config(broker_url="redis://127.0.0.1:1/0", **cfg), clock=clock)


class _Walk:
    """Sizes of objects reached from the ledger's tables, each object counted once."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def size(self, objs: Iterable[object]) -> int:
        total = 0
        seen = self.seen
        for o in objs:
            if o is None or o is True or o is False or id(o) in seen:
                continue
            seen.add(id(o))
            n = sys.getsizeof(o)
            total += (n + 15) & ~15 if n <= 512 else n  # pymalloc's 16-byte size classes
        return total


def parts(ledger: Any) -> dict[str, float]:
    """MB per part of the ledger's memory (see the module docstring)."""
    from exporter.ledger.entry import Entry, Extra

    t = ledger._tables
    w = _Walk()
    values = list(t.entries.values())
    entries = [e for e in values if not isinstance(e, bytes)]
    records = [e for e in values if isinstance(e, bytes)]  # packed (exporter/ledger/packed.py)
    cold = getattr(t, "cold", None)  # (packed records in their own store: ledger/cold.py)
    if cold is not None:
        records = [r for r in cold._ring if r is not None]
    aside = list(getattr(t, "extras", {}).values())
    slots = [s for s in Entry.__slots__ if s not in ("x", "name", "queue", "worker", "state")]
    out = {
        "entries_dict_table": w.size([t.entries]),
        "entry_objects": w.size(entries),
        "packed_records": w.size(records),
        "packed_side": w.size([getattr(t, "extras", None), getattr(t, "warm", None)]),
        "extra_objects": w.size([*(e.x for e in entries), *aside]),
        "task_id_keys": w.size(t.entries),
        "entry_floats_and_ints": w.size(getattr(e, s) for e in entries for s in slots),
        "extra_fields": w.size(
            getattr(x, s) for x in [*(e.x for e in entries), *aside] for s in Extra.__slots__
        ),
        "order_deque": w.size([getattr(t, "order", None)]),
    }
    if cold is not None:
        out["cold_table_and_ring"] = w.size([cold._keys, cold._pos, cold._ring, cold.counts])
        out["warm_and_cool_due"] = w.size([t.warm_entries, t.cool_due]) + w.size(t.cool_due)
    p = t.pending
    held_values = list(p.held.values())
    queues = [getattr(p, n) for n in ("order", "at", "ids") if hasattr(p, n)]  # (layouts)
    out["pending_store"] = (
        w.size([p.held, *queues])
        + w.size(p.held)
        + w.size(held_values)
        + w.size(_flat(held_values))
        + w.size(_flat(_flat(held_values)))
        + w.size(item for q in queues if hasattr(q, "popleft") for item in q)  # (no arrays)
        + w.size(_flat(item for q in queues if hasattr(q, "popleft") for item in q))
    )
    ev = t.evicted
    buckets = list(ev._buckets.values())
    if hasattr(ev, "keys"):  # keys and settle times in arrays (ledger/evicted.py)
        out["evicted_ids"] = (
            w.size([ev.keys, ev._buckets, ev._seconds])
            + w.size(ev.keys)
            + w.size(buckets)
            + w.size(a for b in buckets for a in (b.keys, b.times))
        )
    else:  # (older trees: the id strings and a float each)
        out["evicted_ids"] = (
            w.size([ev.ids, ev._buckets, ev._seconds])
            + w.size(ev.ids)
            + w.size(ev.ids.values())
            + w.size(buckets)
            + w.size(b.ids for b in buckets)
        )
    out["running_recent_dirty_persisted"] = w.size(
        [t.running, t.recent, t.recent_failed, t.dirty, t.persisted]
    ) + w.size([*t.recent, *t.recent_failed, *t.dirty, *t.persisted])
    mb = {k: v / 1e6 for k, v in out.items()}
    mb["total"] = sum(mb.values())
    mb["bytes_per_entry"] = sum(out.values()) / max(1, len(values) + len(cold or ()))
    mb["packed"] = len(records)
    mb["thaws"] = getattr(t, "thaws", 0)
    mb["held_tasks"] = len(p.held)
    return mb


def pymalloc() -> dict[str, float]:
    """MB in Python's small-object allocator: arenas held, live blocks, free space in them
    (what a long-lived object sprinkled among freed ones keeps from the system)."""
    import tempfile

    with tempfile.TemporaryFile(mode="w+") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read()

    def field(label: str) -> float:
        for line in text.splitlines():
            if line.startswith(label):
                return float(line.rsplit("=", 1)[1].replace(",", "")) / 1e6
        return 0.0

    arenas = next(
        (float(line.split()[0]) for line in text.splitlines() if "bytes/arena" in line), 0.0
    )
    return {
        "pymalloc_arenas_mb": arenas * 1.048576,
        "pymalloc_live_blocks_mb": field("# bytes in allocated blocks"),
        "pymalloc_free_blocks_mb": field("# bytes in available blocks"),
        "pymalloc_unused_pools_mb": field(
            next((line.split("=")[0] for line in text.splitlines() if "unused pools" in line), "?")
        ),
    }


def _flat(items: Iterable[object]) -> list[object]:
    out: list[object] = []
    for item in items:
        if isinstance(item, (tuple, list)):
            out.extend(item)
        elif hasattr(item, "__slots__"):
            out.extend(getattr(item, s, None) for s in item.__slots__)
    return out


def _as_the_daemon() -> None:
    """What the daemon sets for the process at start (older trees have nothing to set)."""
    from exporter import gcpause

    if hasattr(gcpause, "map_large_blocks"):
        gcpause.map_large_blocks()


def tasks_child(
    n: int, distinct_times: bool, show_parts: bool, rate: float, batch: int, late: int = 0
) -> dict[str, Any]:
    from exporter.clock import FakeClock
    from exporter.taskdata import RECEIVED, STARTED, SUCCESS, TaskUpdate

    _as_the_daemon()
    now = time.time()
    # --rate: the ledger's clock moves 1/rate per task, as if they came at that rate.
    clock = FakeClock(now) if rate else None
    state = _state(clock)
    ledger = state.ledger
    base = _rss_mb()
    t0 = time.process_time()
    pending: list[Any] = []
    for i in range(n):
        if clock is not None:
            clock.advance(1 / rate)
        tid = task_id(i)
        name = f"app.tasks.t{i % 50}"
        if distinct_times:
            at = now + i * 1e-4
            started, done = at + 1e-5, at + 2e-5
            runtime = 0.01 + i % 7 * 1e-3
        else:  # (bench.ledger_bench's RSS workload: one float object for every time)
            at = started = done = now
            runtime = 0.01
        pending += (
            TaskUpdate(tid, RECEIVED, "events", timestamp=at, name=name, retries=0),
            TaskUpdate(tid, STARTED, "events", timestamp=started, worker="w1@host"),
            TaskUpdate(tid, SUCCESS, "events", timestamp=done, runtime=runtime),
        )
        if late and i >= late:  # --late: the result pub/sub reports a task `late` tasks later
            pending.append(TaskUpdate(task_id(i - late), SUCCESS, "pubsub", timestamp=done))
        if len(pending) >= batch:
            if batch == 1:  # one update per call, as bench.ledger_bench
                for u in pending:
                    ledger.apply(u)
            else:  # what a consumer's batch gets: one apply_many, one `now`
                ledger.apply_many(pending)
            pending = []
    ledger.apply_many(pending)
    cpu = time.process_time() - t0
    counts = ledger.counts()
    out: dict[str, Any] = {
        "tasks": n,
        "rss_mb_imports": base,
        "rss_mb": _rss_mb(),
        "cpu_s": cpu,
        "entries": counts.entries,
        "held": counts.label_pending,
        "released_early": counts.label_overflow,
        "thawed": getattr(ledger._tables, "thaws", 0),  # late updates of packed entries
    }
    if show_parts:
        out["parts"] = parts(ledger) | pymalloc()
    return out


def reconcile_child(url: str, n: int, show_parts: bool) -> dict[str, Any]:
    from exporter.backend_redis import backend_client
    from exporter.keeper.gate import StartGate
    from exporter.sources.reconcile import ReconcileSource

    _as_the_daemon()
    state = _state(
        result_backend=url,
        reconcile_batch=1000,
        reconcile_max_keys_per_second=1e9,
        ledger_max_tasks=200_000,
    )
    source = ReconcileSource(state, lambda: backend_client(state.config), StartGate())
    base = _rss_mb()
    t0 = time.process_time()
    counted = source.run_once()  # (trims the heap at its end: gcpause.py)
    cpu = time.process_time() - t0
    out: dict[str, Any] = {
        "results": n,
        "counted": counted,
        "rss_mb_imports": base,
        "rss_mb": _rss_mb(),
        "cpu_s": cpu,
        "entries": state.ledger.counts().entries,
    }
    if show_parts:
        out["parts"] = parts(state.ledger) | pymalloc()
    return out


def _child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.ledger_memory", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_memory")
    parser.add_argument("--small", action="store_true", help="CI-sized run")
    parser.add_argument("--only", choices=sorted(FULL), action="append")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--reconcile", type=int, default=None)
    parser.add_argument("--distinct-times", action="store_true")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="tasks per second of ledger clock (0: real)"
    )
    parser.add_argument(
        "--batch", type=int, default=1, help="updates per apply_many (1: apply each)"
    )
    parser.add_argument("--late", type=int, default=0, help="pub/sub repeats results N later")
    parser.add_argument("--parts", action="store_true", help="also walk the tables per part")
    parser.add_argument("--tree", help="import exporter from this checkout (before/after)")
    parser.add_argument("--tasks-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--reconcile-child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tree:
        sys.path.insert(0, args.tree)
    if args.tasks_child is not None:
        child = tasks_child(
            args.tasks_child, args.distinct_times, args.parts, args.rate, args.batch, args.late
        )
        print(json.dumps(child))
        return 0
    if args.reconcile_child is not None:
        url, n = args.reconcile_child
        print(json.dumps(reconcile_child(url, int(n), args.parts)))
        return 0
    sizes = dict(SMALL if args.small else FULL)
    for key in FULL:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    extra = (["--parts"] if args.parts else []) + (["--tree", args.tree] if args.tree else [])
    wanted = set(args.only or FULL)
    report: dict[str, Any] = {}
    if "tasks" in wanted:
        flags = ["--distinct-times"] if args.distinct_times else []
        flags += ["--rate", str(args.rate)] if args.rate else []
        flags += ["--batch", str(args.batch)]
        flags += ["--late", str(args.late)] if args.late else []
        report["tasks"] = _child("--tasks-child", str(sizes["tasks"]), *flags, *extra)
        _print("tasks", report["tasks"])
    if "reconcile" in wanted:
        from tests.support.redisserver import RedisServer

        server = RedisServer()
        server.start()
        try:
            url = f"{server.url}/5"
            fill(url, sizes["reconcile"])
            n = str(sizes["reconcile"])
            report["reconcile"] = _child("--reconcile-child", url, n, *extra)
            _print("reconcile", report["reconcile"])
        finally:
            server.cleanup()
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(report, indent=2))
    return 0


def _print(part: str, figures: dict[str, Any]) -> None:
    shown = {k: v for k, v in figures.items() if k != "parts"}
    print(f"{part}: " + ", ".join(f"{k}={_shown(v)}" for k, v in shown.items()), flush=True)
    for k, v in figures.get("parts", {}).items():
        print(f"  {k:34} {_shown(v)}", flush=True)


def _shown(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


if __name__ == "__main__":
    raise SystemExit(main())
