"""Every celery-mixin query against danihodovic/celery-exporter and ours, side by side, one run.

    python scripts/mixin_check.py --mixin DIR --reference-dir DIR --reference-python PYTHON

`--mixin` is the `celery-mixin` folder of a danihodovic/celery-exporter checkout (its rendered
`dashboards_out/*.json` and `prometheus_alerts.yaml`/`prometheus_rules.yaml` are read, nothing
is rendered or copied); `--reference-dir` that checkout (its `cli.py` is run) with
`--reference-python`, a Python that has its dependencies. Nothing of either is kept here.

One private redis-server, one prefork worker with -E (tests/app/tasks.py, queues celery and
mail), the reference and ours (`--compat danihodovic`, no other option: a drop-in) as two jobs
of one real Prometheus, a busy workload (successes, failures, retries, rejects, revokes,
expiries), then the worker leaves and 150 tasks queue up (the alerts' conditions). Then every
query is evaluated per job (mixin_queries.py) and tabulated: data on both, reference only (a
gap of ours), ours only, neither; where both have data, whether the label sets (job, instance
aside) or the values (beyond 1 and 5%) differ. Each family's totals are compared too.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.common import free_port, wait_for  # noqa: E402
from tests.support.prometheus import PROMETHEUS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mixin_queries import JOBS, Prom, evaluate, extract, report, totals  # noqa: E402


def workload(env: dict[str, str], seconds: float) -> None:
    """Successes, failures, retries, rejects, revokes and expiries, on two queues."""
    from tests.support.workers import celery_app

    app = celery_app(env)
    end = time.monotonic() + seconds
    tick = 0
    while time.monotonic() < end:
        for _ in range(4):
            app.send_task("tests.add", (tick, 1))
        app.send_task("tests.add", (tick, 2), queue="mail")
        if tick % 2 == 0:
            app.send_task("tests.sleep", (0.3,))
        if tick % 3 == 0:
            app.send_task("tests.fail_permanent")
            app.send_task("tests.retry_once", (tick,))
        if tick % 5 == 0:
            app.send_task("tests.reject")
        if tick % 10 == 0:
            app.send_task("tests.retry_then_fail")
            held = app.send_task("tests.add", (0, 0), countdown=5)
            app.control.revoke(held.id)
            app.send_task("tests.add", (0, 1), countdown=3, expires=1)
        tick += 1
        time.sleep(1.0)


def backlog(env: dict[str, str], n: int) -> None:
    from tests.support.workers import celery_app

    app = celery_app(env)
    for i in range(n):
        app.send_task("tests.add", (i, 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixin", type=Path, required=True, help="celery-mixin folder")
    parser.add_argument("--reference-dir", type=Path, required=True)
    parser.add_argument("--reference-python", required=True)
    parser.add_argument("--seconds", type=float, default=150, help="busy workload length")
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args()
    queries = extract(args.mixin)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the children on a kill too

    from tests.support.redisserver import RedisServer
    from tests.support.workers import Worker

    server = RedisServer()
    server.start()
    url = f"{server.url}/0"
    env = {"TEST_BROKER_URL": url, "TEST_BACKEND_URL": url}
    work = Path(tempfile.mkdtemp(prefix="mixin-check-"))
    ports = {side: free_port() for side in JOBS}
    ours = [sys.executable, "-m", "exporter", "--compat", "danihodovic", "--broker-url", url]
    ref = [args.reference_python, "cli.py", "--broker-url", url]
    procs = [_spawn(work, "ours", [*ours, "--host", "127.0.0.1", "--port", str(ports["ours"])],
                    ROOT),
             _spawn(work, "reference", [*ref, "--host", "127.0.0.1", "--port",
                                        str(ports["reference"])], args.reference_dir)]  # fmt: skip
    worker = None
    try:
        prom_port = free_port()
        config = {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
                  "scrape_configs": [{"job_name": JOBS[side], "scrape_timeout": "4s",
                                      "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                                     for side, port in ports.items()]}  # fmt: skip
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        procs.append(_spawn(work, "prometheus", [
            PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}"], work))  # fmt: skip
        prom = Prom(f"http://127.0.0.1:{prom_port}", 0, 0)
        wait_for(lambda: all(t["health"] == "up" for t in prom.get("targets")["activeTargets"])
                 and len(prom.get("targets")["activeTargets"]) == 2, 120,
                 what="both exporters scraped")  # fmt: skip
        # Two more scrapes before any task: ours serves its second scrape the body its first
        # rendered (the renderer starts watching at the second), so a workload started
        # between them reaches its series one scrape late, born higher, and increase()
        # over the run read up to 4 lower than the reference's on some panels.
        time.sleep(11)
        worker = Worker(env, queues="celery,mail", concurrency=2, extra=("-E",)).wait_ready()
        start = time.time()
        workload(env, args.seconds)
        time.sleep(20)  # the last tasks settle and are scraped (5 s interval)
        # The alerts' conditions: the worker leaves (worker-offline), 150 tasks queue up.
        worker.stop()
        worker = None
        backlog(env, 150)
        time.sleep(30)
        prom.start, prom.end = start - 60, time.time()
        rows = evaluate(prom, queries, prom.end - start + 60)
        family_rows = totals(prom, prom.end - start + 60)
    finally:
        if worker is not None:
            worker.stop()
        for p in reversed(procs):
            p.terminate()
            p.wait(30)
        server.stop()
        print(f"logs: {work}", file=sys.stderr)
    report(rows)
    print("\nEach family's totals (max over the run), per label set:")
    report(family_rows)
    if args.json:
        args.json.write_text(json.dumps(rows + family_rows, indent=1))


def _spawn(work: Path, name: str, argv: list[str], cwd: Path) -> Any:
    import subprocess

    log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


if __name__ == "__main__":
    main()
