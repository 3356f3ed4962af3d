"""End to end in `--compat danihodovic`: a real worker (-E), the exporter in compat mode and a
real Prometheus scraping it every second. celery-mixin's key queries (written out by hand
below; they mirror the expressions of danihodovic/celery-exporter's celery-mixin, with its
default selector job=~".*celery.*" and its ignored task/queue "None") return data, its
fail-rate alert selects the task that always fails and no other, and every family of the
reference has data for a busy workload."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.support.metrics import metrics, total
from tests.support.prometheus import PROMETHEUS, Stack
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker, celery_app

pytestmark = pytest.mark.e2e

SEL = 'job=~".*celery.*"'
QUEUE = f'{SEL}, queue_name!~"None"'
TASK = f'{QUEUE}, name!~"None"'

# celery-mixin's CeleryTaskHighFailRate (alerts.libsonnet): over 5% of a task's runs failed
# in 10m, per job, namespace, queue and task name.
FAIL_RATE_ALERT = f"""
sum(increase(celery_task_failed_total{{{TASK}}}[10m])) by (job, namespace, queue_name, name)
/
(
  sum(increase(celery_task_failed_total{{{TASK}}}[10m])) by (job, namespace, queue_name, name)
  +
  sum(increase(celery_task_succeeded_total{{{TASK}}}[10m])) by (job, namespace, queue_name, name)
)
* 100 > 5
"""
WORKER_DOWN_ALERT = f"celery_worker_up{{{SEL}}} == 0"
HIGH_QUEUE_ALERT = f"sum(celery_queue_length{{{QUEUE}}}) by (job, namespace, queue_name) > 100"
# Dashboard panels (celery-tasks-overview and celery-tasks-by-task), Grafana's $__range and
# $__rate_interval replaced by windows that cover this test's load.
PANELS = {
    "workers": f"count(celery_worker_up{{{SEL}}} == 1)",
    "workers active tasks": f"sum(celery_worker_tasks_active{{{SEL}}})",
    "queues": f"count(group by (queue_name) (celery_queue_length{{{SEL}}}))",
    "queue length": f"sum(celery_queue_length{{{QUEUE}}}) by (job, queue_name)",
    "runtime p50": "histogram_quantile(0.50, sum(irate(celery_task_runtime_bucket"
    f"{{{QUEUE}}}[30s])) by (job, le))",
    "runtime p95 by task": "histogram_quantile(0.95, sum(irate(celery_task_runtime_bucket"
    f"{{{TASK}}}[30s])) by (name, job, le))",
    "average runtime": f"sum(rate(celery_task_runtime_sum{{{QUEUE}}}[10m])) by (name) / "
    f"sum(rate(celery_task_runtime_count{{{QUEUE}}}[10m])) by (name) > 0",
    "top exceptions": f"round(sum(increase(celery_task_failed_total{{{QUEUE}}}[1w])) "
    "by (job, exception))",
    "task rate by name": f"topk(10, sum(rate(celery_task_received_total{{{QUEUE}}}[6h])) "
    "by (name))",
    **{
        f"{state} by job": f"sum(round(increase(celery_task_{state}_total{{{QUEUE}}}[10m]))) "
        "by (job)"
        for state in ("succeeded", "failed", "sent", "received", "retried", "revoked", "rejected")
    },
}
# Every family of the reference, by a series name it must show.
FAMILIES = [
    *(f"celery_task_{s}_total" for s in ("sent", "received", "started", "succeeded", "failed",
                                         "rejected", "revoked", "retried")),
    "celery_task_runtime_bucket", "celery_task_queue_wait_time_bucket", "celery_worker_up",
    "celery_worker_tasks_active", "celery_queue_length", "celery_active_consumer_count",
    "celery_active_worker_count", "celery_active_process_count",
]  # fmt: skip


class CompatStack(Stack):
    def start_exporter(self) -> None:
        self.spawn("exporter", [
            sys.executable, "-m", "exporter", "--broker-url", self.broker, "--host", "127.0.0.1",
            "--port", str(self.exporter_port), "--poll-interval", "1", "--queues", "celery"],
            {"CE_INSTANCE": f"compat-{self.exporter_port}",
             "CE_COMPAT": "danihodovic"})  # fmt: skip

    def start_prometheus(self) -> None:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "celery", "scrape_interval": "1s", "scrape_timeout": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{self.exporter_port}"]}],
            }],
        }  # fmt: skip
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.spawn("prometheus", [
            PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.prom_port}"])  # fmt: skip


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[CompatStack]:
    import os

    if not os.path.exists(PROMETHEUS):
        pytest.skip(f"{PROMETHEUS} is not installed (apt-get install prometheus)")
    s = CompatStack(f"{redis_server.url}/10")
    yield s
    s.stop()


def by_name(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"].get("name", ""): float(r["value"][1]) for r in result}


def test_celery_mixin_queries_and_fail_rate_alert(
    stack: CompatStack, start_worker: Callable[..., Worker]
) -> None:
    env = {"TEST_BROKER_URL": stack.broker, "TEST_BACKEND_URL": stack.broker}
    start_worker(env, concurrency=2, extra=("-E",))
    stack.start_exporter()
    stack.start_prometheus()
    stack.wait(lambda: stack.get("/targets")["activeTargets"][0]["health"] == "up", 60,
               "the exporter target up")  # fmt: skip
    app = celery_app(env)

    def counted(metric: str, **labels: str) -> float:
        return total(metrics(stack.exporter + "/metrics"), metric, **labels)

    def send(name: str, n: int) -> None:
        args = {"tests.add": (1, 2), "tests.retry_once": (1,)}.get(name, ())
        for _ in range(n):
            app.send_task(name, args=args)

    # Round 1 makes every series exist (and be scraped) before round 2, so increase() over
    # the alert's window sees round 2 whole: a series' first sample is not an increase.
    send("tests.add", 3)
    send("tests.fail_permanent", 1)
    send("tests.retry_once", 1)
    stack.wait(lambda: counted("celery_task_succeeded_total") == 4
               and counted("celery_task_failed_total") == 1, 60, "round 1 counted")  # fmt: skip
    failed = f'celery_task_failed_total{{{SEL}, exception="PermanentError"}}'
    stack.wait(lambda: stack.query(failed), 30, "round 1 scraped")
    send("tests.fail_permanent", 5)
    send("tests.retry_once", 2)
    send("tests.add", 20)
    stack.wait(lambda: counted("celery_task_failed_total") == 6
               and counted("celery_task_succeeded_total") == 26, 60, "round 2 counted")  # fmt: skip
    # Each delivery counts: a retried task was received and started twice.
    m = metrics(stack.exporter + "/metrics")
    assert total(m, "celery_task_received_total", name="tests.retry_once") == 6
    assert total(m, "celery_task_started_total", name="tests.retry_once") == 6
    assert total(m, "celery_task_retried_total", name="tests.retry_once") == 3
    # A retry is published again from the pool process (task_send_sent_event in the worker's
    # app): 3 + 3 sent. Its task-sent names the process (gen<pid>@<machine>), not `-n`'s node.
    assert total(m, "celery_task_sent_total", name="tests.retry_once") == 6
    assert total(m, "celery_task_sent_total", name="tests.retry_once", hostname="testhost") == 0
    assert total(m, "celery_task_succeeded_total", name="tests.retry_once") == 3
    assert total(m, "celery_worker_up", hostname="testhost") == 1

    # The alert selects exactly the task that always fails, at 100%.
    stack.wait(lambda: by_name(stack.query(FAIL_RATE_ALERT)) == {"tests.fail_permanent": 100.0},
               30, "the fail-rate alert selecting tests.fail_permanent")  # fmt: skip
    [row] = stack.query(FAIL_RATE_ALERT)
    assert row["metric"]["queue_name"] == "celery" and row["metric"]["job"] == "celery"
    ratio = by_name(stack.query(
        "sum by (name) (celery_task_failed_total) / (sum by (name) (celery_task_failed_total) "
        "+ sum by (name) (celery_task_succeeded_total))"))  # fmt: skip
    assert ratio["tests.fail_permanent"] == 1 and ratio["tests.add"] == 0
    assert stack.query(WORKER_DOWN_ALERT) == [] and stack.query(HIGH_QUEUE_ALERT) == []

    # Dashboard panels return data while a steady load runs (irate needs fresh increases).
    stop = threading.Event()

    def load() -> None:
        while not stop.wait(0.1):
            send("tests.add", 2)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        for title, expr in PANELS.items():

            def finite(expr: str = expr) -> bool:
                return any(not math.isnan(float(r["value"][1])) for r in stack.query(expr))

            stack.wait(finite, 30, f"panel {title!r} has data: {expr}")
    finally:
        stop.set()
        loader.join(10)
    # The zero series' exception="" is a series without the label in Prometheus.
    exceptions = {r["metric"].get("exception", "") for r in stack.query(PANELS["top exceptions"])}
    assert {"PermanentError", ""} <= exceptions, exceptions
    queues = stack.get('/label/queue_name/values?match[]=celery_task_received_total{job="celery"}')
    assert queues == ["celery"]
    for name in FAMILIES:
        assert stack.query(f'count({name}{{job="celery"}})'), f"{name} has no data"
