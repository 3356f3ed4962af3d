"""End to end with a real Prometheus: the exporter, a real worker with a mixed load, and
/usr/bin/prometheus running the shipped scrape config and rules (templated to this test's
ports, 1 s intervals, a short `for:`). Checks the target is up, every dashboard query returns
data (or names a metric documented as allowed-empty), the recording rules agree with the
exporter's own counts, and a failure burst fires the success-rate alert."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RedisServer, Worker, celery_app, free_port, wait_for
from tests.e2e.test_demo import metrics, total
from tests.unit.promql_names import dashboards, load_module, metric_names, panel_targets

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = "/usr/bin/prometheus"
pytestmark = pytest.mark.e2e
rules_gen = load_module("deploy/prometheus/generate.py", "ops_rules_generate")
grafana_gen = load_module("grafana/generate.py", "ops_grafana_generate")
ALERT = "CeleryTaskSuccessRateBurnFast"


class Stack:
    def __init__(self, broker: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ce-prom-e2e-"))
        self.exporter_port = free_port()
        self.prom_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.broker = broker

    @property
    def exporter(self) -> str:
        return f"http://127.0.0.1:{self.exporter_port}"

    @property
    def prom(self) -> str:
        return f"http://127.0.0.1:{self.prom_port}"

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                           env={**os.environ, **(env or {})}))  # fmt: skip

    def start_exporter(self) -> None:
        self.spawn("exporter", [
            sys.executable, "-m", "exporter", "--broker-url", self.broker, "--host", "127.0.0.1",
            "--port", str(self.exporter_port), "--poll-interval", "1", "--queues", "celery",
            "--success-window", "300"], {"CE_INSTANCE": f"e2e-{self.exporter_port}"})  # fmt: skip

    def start_prometheus(self) -> None:
        # The shipped files, templated: this test's target, 1 s intervals, no Alertmanager,
        # and the rules rendered with a short for: so the burst alert fires in seconds.
        config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config.pop("alerting", None)
        job = config["scrape_configs"][0]
        job.update(scrape_interval="1s", scrape_timeout="1s")
        job["static_configs"] = [{"targets": [f"127.0.0.1:{self.exporter_port}"]}]
        rules = rules_gen.render({"fast_burn_for": "3s"})
        (self.dir / "celery-rules.yml").write_text(rules)
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.spawn("prometheus", [
            PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.prom_port}"])  # fmt: skip

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, expr: str) -> float:
        result = self.query(expr)
        assert len(result) == 1, f"{expr}: {result}"
        return float(result[0]["value"][1])

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.prom}/api/v1{path}", timeout=5) as resp:
            return json.loads(resp.read())["data"]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.dir.glob("*.log")))  # fmt: skip

    def wait(self, cond: Callable[[], Any], timeout: float, what: str) -> None:
        """wait_for, with the exporter's and Prometheus' logs in the failure message."""
        try:
            wait_for(cond, timeout, interval=0.25, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


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
