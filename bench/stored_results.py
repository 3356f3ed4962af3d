"""Stored task results as Celery's Redis result backend writes them, for the benches that need
a full backend: `celery-task-meta-<id>` keys holding JSON with status, result, traceback,
children, date_done and task_id (no name: `result_extended` off, Celery's default). Every
tenth one is a FAILURE, the others a SUCCESS; result i is done `i` milliseconds after `base`.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

# The date the recorded reconcile figures used (bench.ledger_memory, bench/RESULTS.md).
BASE = datetime(2026, 11, 28, 10, tzinfo=timezone.utc)


def task_id(i: int) -> str:
    """A canonical UUID, distinct per i and the same in every run."""
    return str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15 + 0x5F0C4A7E) % (1 << 128), version=4))


def stored_result(tid: str, i: int, status: str, base: datetime = BASE) -> bytes:
    failed = status == "FAILURE"
    done = base + timedelta(milliseconds=i)
    return json.dumps(
        {
            "status": status,
            "result": {"exc_type": "ValueError", "exc_message": [f"bad {i}"]} if failed else i,
            "traceback": "Traceback (most recent call last):\n  ...\nValueError"
            if failed
            else None,
            "children": [],
            "date_done": done.isoformat(timespec="microseconds"),
            "task_id": tid,
        }
    ).encode()


def fill(url: str, n: int, base: datetime = BASE, flush: bool = True) -> None:
    """Write n stored results (ids `task_id(0..n-1)`) into the Redis database at `url`."""
    import redis

    client = redis.Redis.from_url(url)
    if flush:
        client.flushdb()
    for start in range(0, n, 5000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(n, start + 5000)):
            tid = task_id(i)
            status = "FAILURE" if i % 10 == 0 else "SUCCESS"
            pipe.set(f"celery-task-meta-{tid}", stored_result(tid, i, status, base))
        pipe.execute()
    client.close()
