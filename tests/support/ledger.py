"""Helpers for the ledger's accuracy tests: the exporter as a subprocess, a task mix, truth.

The exporter runs as `python -m exporter` (the real daemon), so SIGKILL and restart are real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.common import ROOT, free_port, wait_for

COUNTERS = ("succeeded", "failed", "retried", "revoked")


class ExporterProc:
    def __init__(self, args: list[str], instance: str) -> None:
        self.port = free_port()
        self.args = [
            *args,
            "--instance",
            instance,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--poll-interval",
            "5",
        ]
        # The log outlives restarts of the process; cleanup() removes it.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="ce-exporter-", suffix=".log", delete=False
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ExporterProc:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", *self.args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        # Generous: on a loaded CI machine (load 7 per core measured) a start took over 30 s.
        wait_for(lambda: self.metrics_text() or self._dead(), 90, what="exporter /metrics")
        return self

    def _dead(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"exporter exited:\n{self.output()[-3000:]}")
        return False

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def metrics_text(self) -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return ""

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        out = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def counts(self) -> Counter[str]:
        """counter -> total over every name (e.g. {"succeeded": 400})."""
        out: Counter[str] = Counter()
        for (name, _labels), value in self.samples().items():
            for counter in COUNTERS:
                if name == f"celery_task_{counter}_total":
                    out[counter] += int(value)
        return out

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        os.unlink(self.log.name)


def send_mix(app: Any, n: int, queue: str, *, revoke_every: int = 10) -> Counter[str]:
    """Send n tasks: adds, permanent failures, retry-once tasks and pre-revoked ones.

    Revoked ids are revoked before they are sent, and a ping after the revoke makes sure
    every worker processed it (control messages are handled in order), so each one is
    discarded by the worker and stored as REVOKED: the truth is known exactly.
    """
    from uuid import uuid4

    truth: Counter[str] = Counter()
    plan: list[tuple[str, tuple[Any, ...], str | None]] = []
    revoked: list[str] = []
    for i in range(n):
        if revoke_every and i % revoke_every == revoke_every - 1:
            task_id = str(uuid4())
            revoked.append(task_id)
            plan.append(("tests.add", (i, 1), task_id))
            truth["revoked"] += 1
        elif i % 7 == 3:
            plan.append(("tests.fail_permanent", (), None))
            truth["failed"] += 1
        elif i % 5 == 2:
            plan.append(("tests.retry_once", (i,), None))
            truth["retried"] += 1
            truth["succeeded"] += 1
        else:
            plan.append(("tests.add", (i, 1), None))
            truth["succeeded"] += 1
    if revoked:
        app.control.revoke(revoked)
        assert app.control.ping(timeout=3.0), "no worker answered the ping after revoke"
    with app.producer_or_acquire() as producer:
        for name, args, task_id in plan:
            app.send_task(name, args, queue=queue, task_id=task_id, producer=producer)
    return truth


def stored_results(client: Any, prefix: str = "") -> Iterator[dict[str, Any]]:
    """Every task record in the result backend, read with SCAN."""
    import json

    for key in client.scan_iter(match=f"{prefix}celery-task-meta-*", count=1000):
        raw = client.get(key)
        if raw is not None:
            yield json.loads(raw)


def backend_truth(client: Any, prefix: str = "") -> Counter[str]:
    """Final states stored in the result backend (what really happened)."""
    out: Counter[str] = Counter()
    names = {"SUCCESS": "succeeded", "FAILURE": "failed", "REVOKED": "revoked"}
    for meta in stored_results(client, prefix):
        status = names.get(meta["status"])
        if status:
            out[status] += 1
            out["retried"] += int(meta.get("retries") or 0)
        elif meta["status"] == "RETRY":  # attempt r failed and asked for a retry: r + 1
            out["retried"] += int(meta.get("retries") or 0) + 1
    return out
