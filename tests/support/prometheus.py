"""A real Prometheus scraping a real exporter, for the end-to-end tests: the shipped
prometheus.yml and rules, templated for the test (1 s intervals, a short `for:`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.support.common import ROOT, free_port, wait_for
from tests.support.promql_names import load_module

PROMETHEUS = "/usr/bin/prometheus"
rules_gen = load_module("deploy/prometheus/generate.py", "ops_rules_generate")


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
