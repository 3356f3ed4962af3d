"""Helpers for the core-daemon integration tests: run `python -m exporter` as a subprocess
and read its /metrics the way Prometheus would (text format, parsed by prometheus_client).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.support.common import ROOT, free_port, wait_for
from tests.support.redisserver import RedisServer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# Fast polls and short broadcasts, so a test sees a change within a second or two.
FAST = ("--poll-interval", "1", "--inspect-timeout", "0.5", "--log-level", "INFO")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """(status, content type, body); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read().decode()


def fresh_db(server: RedisServer, db: int) -> str:
    """URL of one DB of the private Redis, emptied first (DB numbers are per test)."""
    client = redis.Redis(port=server.port, db=db)
    client.flushdb()
    client.close()
    return f"{server.url}/{db}"


def parse_metrics(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


class ExporterProcess:
    """The real daemon on a free loopback port; stderr (the log) goes to a file."""

    def __init__(self, broker_url: str, args: Sequence[str] = (), port: int | None = None):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            prefix="ce-exporter-", suffix=".log", delete=False
        )
        cmd = [
            sys.executable,
            "-m",
            "exporter",
            "--broker-url",
            broker_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *FAST,
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CE_")}
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self._log, env=env, cwd=ROOT
        )

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def get(self, path: str) -> tuple[int, str, str]:
        return http_get(self.base + path)

    def wait_serving(self, timeout: float = 20.0) -> ExporterProcess:
        def serving() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited {self.proc.returncode}:\n{self.log()}")
            return self.get("/-/healthy")[0] == 200

        wait_for(serving, timeout, interval=0.1, what="exporter serving /-/healthy")
        return self

    def metrics(self) -> Samples:
        status, _ctype, body = self.get("/metrics")
        assert status == 200, body
        return parse_metrics(body)

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def wait_value(
        self,
        name: str,
        check: Callable[[float | None], bool],
        timeout: float = 20.0,
        **labels: str,
    ) -> float | None:
        """Wait until `check(value)` holds for the sample; returns that value."""
        box: list[float | None] = []

        def ok() -> bool:
            value = self.value(name, **labels)
            box[:] = [value]
            return check(value)

        try:
            wait_for(ok, timeout, interval=0.2, what=f"{name}{labels}")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; last value {box}\nexporter log:\n{self.log()[-3000:]}"
            ) from None
        return box[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        os.unlink(self._log.name)


def exporters() -> Iterator[Callable[..., ExporterProcess]]:
    """Body of a `run_exporter` fixture: run_exporter(broker_url, *args) -> a serving daemon;
    all are stopped after the test."""
    started: list[ExporterProcess] = []

    def start(broker_url: str, *args: str, wait: bool = True) -> ExporterProcess:
        proc = ExporterProcess(broker_url, args)
        started.append(proc)
        return proc.wait_serving() if wait else proc

    yield start
    for proc in started:
        proc.stop()


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """`python -m exporter ARGS` to completion (for start-up errors)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CE_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )
