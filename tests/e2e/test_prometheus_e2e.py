"""End to end with a real Prometheus: the exporter, a real worker with a mixed load, and
/usr/bin/prometheus running the shipped scrape config and rules (templated to this test's
ports, 1 s intervals, a short `for:`). Checks the target is up, every dashboard query returns
data (or names a metric documented as allowed-empty), the recording rules agree with the
exporter's own counts, and a failure burst fires the success-rate alert."""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.metrics import metrics, total
from tests.support.prometheus import PROMETHEUS, Stack
from tests.support.promql_names import dashboards, load_module, metric_names, panel_targets
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker, celery_app

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e
grafana_gen = load_module("grafana/generate.py", "ops_grafana_generate")
ALERT = "CeleryTaskSuccessRateBurnFast"


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    if not os.path.exists(PROMETHEUS):
        pytest.skip(f"{PROMETHEUS} is not installed (apt-get install prometheus)")
    s = Stack(f"{redis_server.url}/9")
    yield s
    s.stop()


def substitute(expr: str) -> str:
    """Grafana variables -> what the test's Prometheus understands."""
    for var, value in (("${datasource}", ""), ("$__rate_interval", "30s"), ("$job", "celery"),
                       ("$instance", ".*"), ("$task", ".*"), ("$slo", "0.99")):  # fmt: skip
        expr = expr.replace(var, value)
    assert "$" not in expr, expr
    return expr


def send(app: Any, counts: dict[str, int]) -> list[Any]:
    args: dict[str, Callable[[int], tuple[Any, ...]]] = {
        "tests.add": lambda i: (i, 1), "tests.retry_once": lambda i: (i,),
        "tests.fail_permanent": lambda i: (), "tests.fail_transient": lambda i: (),
    }  # fmt: skip
    return [app.send_task(name, args=args[name](i)) for name, n in counts.items() for i in range(n)]


def test_prometheus_scrapes_records_and_alerts(
    stack: Stack, start_worker: Callable[..., Worker]
) -> None:
    env = {"TEST_BROKER_URL": stack.broker, "TEST_BACKEND_URL": stack.broker}
    start_worker(env, concurrency=2)
    stack.start_exporter()
    stack.start_prometheus()
    stack.wait(
        lambda: stack.get("/targets")["activeTargets"][0]["health"] == "up",
        60,
        "the exporter target up",
    )
    app = celery_app(env)

    # Warm-up: every series exists (and is scraped) before the measured load, so rate() sees
    # the whole measured load as increase.
    warm = {"tests.add": 2, "tests.retry_once": 1, "tests.fail_permanent": 1,
            "tests.fail_transient": 1}  # fmt: skip
    send(app, warm)

    def exporter_counts() -> tuple[float, float]:
        m = metrics(stack.exporter + "/metrics")
        return total(m, "celery_task_succeeded_total"), total(m, "celery_task_failed_total")

    stack.wait(lambda: exporter_counts() == (3, 2), 60, "warm-up counted")
    stack.wait(lambda: stack.value('sum(celery_task_failed_total{job="celery"})') == 2, 30,
               "Prometheus scraped the warm-up")  # fmt: skip

    # Measured load: 45 successes (5 after a retry) and 2 failures: 4% failing, under the
    # 14.4% fast-burn limit, so the alert must stay quiet.
    send(app, {"tests.add": 40, "tests.retry_once": 5, "tests.fail_permanent": 1,
               "tests.fail_transient": 1})  # fmt: skip
    stack.wait(lambda: exporter_counts() == (48, 4), 60, "measured load counted")
    stack.wait(lambda: stack.value('sum(celery_task_succeeded_total{job="celery"})') == 48, 30,
               "Prometheus scraped the measured load")  # fmt: skip

    # Recording rules agree with the exporter's own counts.
    expected = 45 / 47
    stack.wait(lambda: abs(stack.value("celery:tasks_success_ratio:5m") - expected) < 0.02, 15,
               f"celery:tasks_success_ratio:5m near {expected:.3f}")  # fmt: skip
    assert stack.value('celery:task_success_ratio:5m{name="tests.add"}') == 1.0
    assert stack.value('celery:task_success_ratio:1h{name="tests.fail_permanent"}') == 0.0
    assert stack.value('celery:task_failed:rate5m{name="tests.add"}') == 0.0
    assert stack.value('celery:task_succeeded:rate5m{name="tests.retry_once"}') > 0
    m = metrics(stack.exporter + "/metrics")
    assert total(m, "celery_tasks_success_ratio") == pytest.approx(48 / 52)  # with the warm-up
    # Each test task always succeeds or always fails, so per name the rule (from counters)
    # and the exporter's own window gauge must agree exactly.
    per_name = {dict(labels)["name"]: v for (n, labels), v in m.items()
                if n == "celery_task_success_ratio"}  # fmt: skip
    assert set(per_name) == set(warm)
    for name, value in per_name.items():
        assert stack.value(f'celery:task_success_ratio:5m{{name="{name}"}}') == value, name
    assert stack.get("/alerts")["alerts"] == [] or all(
        a["labels"]["alertname"] != ALERT for a in stack.get("/alerts")["alerts"]
    )

    check_dashboard_queries(stack)

    # A failure burst: 30 more failures (32 of 77 failing) fires the fast-burn alert.
    send(app, {"tests.fail_permanent": 30})
    stack.wait(lambda: exporter_counts() == (48, 34), 60, "burst counted")

    def firing() -> bool:
        return any(a["labels"]["alertname"] == ALERT and a["state"] == "firing"
                   for a in stack.get("/alerts")["alerts"])  # fmt: skip

    stack.wait(firing, 45, f"{ALERT} firing")
    alert = next(a for a in stack.get("/alerts")["alerts"] if a["labels"]["alertname"] == ALERT)
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["job"] == "celery"
    assert re.search(r"\d+(\.\d+)?% of tasks failed", alert["annotations"]["description"])
    assert stack.query(f'ALERTS{{alertname="{ALERT}", alertstate="firing"}}')
    # The dashboards' alert annotation now finds it too.
    for board in dashboards().values():
        for annotation in board["annotations"]["list"]:
            assert stack.query(substitute(annotation["expr"])), annotation["expr"]


def check_dashboard_queries(stack: Stack) -> None:
    """Every panel query of every dashboard returns data, unless it only reads metrics that
    grafana/generate.py documents as allowed-empty."""
    empty: list[str] = []
    for file, board in dashboards().items():
        for title, expr in panel_targets(board):
            if stack.query(substitute(expr)):
                continue
            if metric_names(expr) & set(grafana_gen.ALLOWED_EMPTY):
                continue
            empty.append(f"{file} / {title}: {expr}")
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            # Grafana's label_values(selector, label) is the series API's label values.
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
            assert match, var["query"]
            selector, label = substitute(match.group(1)), match.group(2)
            values = stack.get(
                f"/label/{label}/values?" + urllib.parse.urlencode({"match[]": selector})
            )
            if not values:
                empty.append(f"{file} / variable {var['name']}: {var['query']}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
