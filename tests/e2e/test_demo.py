"""`python -m demo` with its own redis-server: the exporter shows the traffic the demo
promises (successes, transient and permanent failures, retries, a stuck task, a growing queue),
and SIGTERM stops every process the demo started, Redis included."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.common import wait_for
from tests.support.metrics import metrics, total

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


class Demo:
    def __init__(self) -> None:
        # --private-redis: the demo starts (and must stop) its own redis-server too.
        argv = [sys.executable, "-m", "demo", "--private-redis", "--duration", "150",
                "--tick", "0.5", "--stuck-after", "4", "--burst-at", "0"]  # fmt: skip
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def find(self, pattern: str) -> re.Match[str] | None:
        return re.search(pattern, self.output())

    def pids(self) -> dict[str, int]:
        return {m[0]: int(m[1]) for m in re.findall(r"started (\w+) \(pid (\d+)\)", self.output())}


@pytest.fixture
def demo() -> Iterator[Demo]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    d = Demo()
    yield d
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(30)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait(10)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_shows_the_traffic_shape_and_stops_cleanly(demo: Demo) -> None:
    match = wait_for(lambda: demo.find(r"demo: exporter\s+(http://\S+/metrics)"), 120,
                     what=f"the demo's exporter URL; output:\n{demo.output()}")  # fmt: skip
    url = match.group(1)
    assert set(demo.pids()) >= {"redis", "worker1", "worker2", "exporter", "beat"}

    def shape() -> bool:
        m = metrics(url)
        return (
            total(m, "celery_task_succeeded_total", name="demo.ok") >= 10
            and total(m, "celery_task_failed_total", name="demo.transient") >= 1
            and total(m, "celery_task_failed_total", name="demo.permanent") >= 1
            and total(m, "celery_task_exceptions_total", exception="TransientError") >= 1
            and total(m, "celery_task_exceptions_total", exception="PermanentError") >= 1
            and total(m, "celery_task_retried_total", name="demo.retry") >= 1
            and total(m, "celery_task_succeeded_total", name="demo.retry") >= 1
            and total(m, "celery_tasks_stuck", name="demo.slow") >= 1
            and total(m, "celery_queue_length", queue_name="demo.backlog") >= 3
            and total(m, "celery_workers") == 2
            # the demo beat: a healthy and a broken periodic task, from the schedule file
            and total(m, "celery_beat_entry_last_success_timestamp_seconds", entry="heartbeat") > 0
            and total(m, "celery_beat_entry_last_failure_timestamp_seconds", entry="nightly-export")
            > 0
        )

    try:
        wait_for(shape, 120, interval=1, what="the demo's traffic shape")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ndemo output:\n{demo.output()}") from None
    # The unconsumed queue keeps growing; nothing is failing on the healthy task.
    before = total(metrics(url), "celery_queue_length", queue_name="demo.backlog")
    wait_for(lambda: total(metrics(url), "celery_queue_length", queue_name="demo.backlog") > before,
             30, interval=0.5, what="demo.backlog to grow")  # fmt: skip
    assert total(metrics(url), "celery_task_failed_total", name="demo.ok") == 0
    # The operator page and API are usable with the token the demo printed.
    ui = demo.find(r"demo: operator\s+(http://\S+)/ui\s+\(token for this playground only: (\S+)\)")
    assert ui is not None, demo.output()
    req = urllib.request.Request(
        ui.group(1) + "/api/sitrep", headers={"Authorization": f"Bearer {ui.group(2)}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        sitrep = json.loads(resp.read())
    assert any(q["name"] == "demo.backlog" for q in sitrep["queues"]), sitrep
    assert any(line.startswith("Periodic task nightly-export (demo.export) failed")
               for line in sitrep["watch_items"]), sitrep  # fmt: skip
    assert total(metrics(url), "celery_beat_up", source="file") == 1
    # ... and the page's Periodic view (/api/periodic): the healthy entry ok, the broken failing
    req = urllib.request.Request(
        ui.group(1) + "/api/periodic", headers={"Authorization": f"Bearer {ui.group(2)}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        periodic = json.loads(resp.read())
    states = {(e["source"], e["name"]): e["state"] for e in periodic["entries"]}
    assert states == {("file", "heartbeat"): "ok", ("file", "nightly-export"): "failing"}, states
    if os.path.exists("/usr/bin/prometheus"):
        assert "prometheus" in demo.pids()
        # The progress line shows the recording rule once Prometheus has evaluated it.
        wait_for(lambda: demo.find(r"\| success 5m \d+\.\d%"), 60, what="success ratio shown")

    pids = demo.pids()
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.proc.wait(60) == 0, demo.output()
    demo.reader.join(10)
    assert "demo: SIGTERM: shutting down" in demo.output()
    for name, pid in pids.items():
        assert not group_alive(pid), f"{name} (pid {pid}) or its children outlived the demo"


def test_sigterm_while_starting_leaves_nothing_behind(demo: Demo) -> None:
    wait_for(lambda: "worker2" in demo.pids(), 60, what="the demo to start its workers")
    pids = demo.pids()
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.proc.wait(60) == 0
    demo.reader.join(10)
    assert "demo: stopped worker1" in demo.output(), demo.output()
    for name, pid in pids.items():
        assert not group_alive(pid), f"{name} (pid {pid}) or its children outlived the demo"
