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
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from prometheus_client.exposition import choose_encoder

from exporter.clock import FakeClock
from exporter.collectors import build_registry
from exporter.config import Config
from exporter.poller import Poller
from exporter.state import State
from exporter.taskstate import FAILURE, RECEIVED, SENT, STARTED, SUCCESS, TaskUpdate
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render_bench")
    parser.add_argument("--names", type=int, action="append", help="task names (repeatable)")
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-sent", action="store_true", help="no task-sent events")
    args = parser.parse_args(argv)
    for names in args.names or [1000]:
        result = run(names, args.queues, args.workers, args.rounds, not args.no_sent)
        print(json.dumps(result, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
