"""The ledger's fold in isolation: memory per entry and CPU per task, for comparing layouts.

    python -m bench.ledger_fold [--tasks N] [--no-tracemalloc] [--tree PATH] [--max-tasks M]

Folds N tasks (received, started, succeeded; events source, one `apply_many` per task)
into a default-sized ledger with a fake clock and prints bytes per entry (tracemalloc) and
CPU seconds. `--tree` imports `exporter` from another checkout (e.g. main), so two layouts
can be measured side by side by the same interpreter; under `valgrind --tool=callgrind`
with `--no-tracemalloc` it gives instruction counts (subtract a run with `--tasks 1`).
`--max-tasks` below N makes every later task evict one (and, with packed.py, pack the one
leaving the warm window, a tenth of M): the steady state of a full ledger. `--distinct-times`
gives each event its own timestamp, as a real stream does.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import tracemalloc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_fold")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--tree", help="import exporter from this checkout instead")
    parser.add_argument("--max-tasks", type=int, default=200_000, help="the ledger's bound")
    parser.add_argument(
        "--distinct-times", action="store_true", help="a timestamp per event (default: one)"
    )
    args = parser.parse_args(argv)
    if args.tree:
        sys.path.insert(0, args.tree)
    from exporter.clock import FakeClock
    from exporter.ledger import Ledger

    try:  # (older layouts named the module taskstate)
        data = importlib.import_module("exporter.taskdata")
    except ImportError:
        data = importlib.import_module("exporter.taskstate")
    update, received, started, success = (
        data.TaskUpdate, data.RECEIVED, data.STARTED, data.SUCCESS
    )  # fmt: skip
    ledger = Ledger(clock=FakeClock(1.7e9), max_tasks=args.max_tasks)
    if not args.no_tracemalloc:
        tracemalloc.start()
    before = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
    cpu = time.process_time()
    for i in range(args.tasks):
        tid = f"id{i}"
        at = started_at = done = 1.7e9
        if args.distinct_times:
            at = 1.7e9 + i * 1e-3
            started_at, done = at + 1e-4, at + 2e-4
        ledger.apply_many(
            [
                update(tid, received, "events", name="app.t", queue="q", worker="w1", timestamp=at),
                update(tid, started, "events", timestamp=started_at),
                update(tid, success, "events", timestamp=done, runtime=0.01),
            ]
        )
    cpu = time.process_time() - cpu
    line = f"tasks={args.tasks:,} cpu_s={cpu:.3f}"
    if before is not None:
        after = tracemalloc.take_snapshot()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        line += f" bytes_per_entry={grown / max(1, args.tasks):.1f}"
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
