"""Record a stream of real Celery events into bench/fixtures/celery_events.jsonl.

Starts a private redis-server and a real worker of tests/app/tasks.py with -E, sends a mix
of tasks (successes, failures, retries) and writes every event the receiver got, one JSON
object per line, with file paths in tracebacks replaced so no machine path is recorded.
Run: python -m bench.capture_events
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path

from tests.support.common import wait_for
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker, celery_app

OUT = Path(__file__).resolve().parent / "fixtures" / "celery_events.jsonl"
_PATH = re.compile(r'File "[^"]*/([^/"]+)"')


def main() -> int:
    from celery import Celery

    server = RedisServer()
    server.start()
    env = {"TEST_BROKER_URL": f"{server.url}/0", "TEST_BACKEND_URL": f"{server.url}/1"}
    worker = Worker(env, pool="threads", concurrency=4).wait_ready()
    events: list[dict[str, object]] = []
    app = Celery(broker=env["TEST_BROKER_URL"])
    stop = threading.Event()

    def consume() -> None:
        with app.connection_for_read() as conn:
            recv = app.events.Receiver(conn, handlers={"*": events.append})
            for _ in recv.consume(limit=None, timeout=None, wakeup=True):
                if stop.is_set():
                    break

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    producer = celery_app(env)
    try:
        wait_for(lambda: any(e["type"] == "worker-heartbeat" for e in events), 30)
        for i in range(400):
            name = ("tests.add", "tests.fail_permanent", "tests.retry_once")[i % 3 if i % 10 else 2]
            args = (i, 1) if name == "tests.add" else ((i,) if name == "tests.retry_once" else ())
            producer.send_task(name, args)
        wait_for(
            lambda: sum(e["type"] in ("task-succeeded", "task-failed") for e in events) >= 380, 60
        )
    finally:
        stop.set()
        worker.stop()
        server.cleanup()
    with OUT.open("w") as fh:
        for event in events:
            if isinstance(event.get("traceback"), str):
                event["traceback"] = _PATH.sub(r'File "<path>/\1"', event["traceback"])
            fh.write(json.dumps(event, sort_keys=True) + "\n")
    print(f"{len(events)} events written to {OUT.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
