"""Real Celery workers for tests and benchmarks: `Worker` runs `celery worker` on
tests/app/tasks.py as a subprocess; `celery_app` is a producer-side app configured like it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from tests.support.common import ROOT, wait_for


class Worker:
    """A real `celery worker` subprocess running tests/app/tasks.py."""

    def __init__(
        self,
        env: dict[str, str],
        queues: str = "celery",
        name: str | None = None,
        pool: str = "prefork",
        concurrency: int = 2,
        extra: tuple[str, ...] = (),
    ):
        self.name = name or f"w{uuid.uuid4().hex[:6]}@testhost"
        # Kept open for the worker's lifetime and removed in stop(): no context manager fits.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="ce-worker-", suffix=".log", delete=False
        )
        full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.app.tasks",
                "worker",
                "-n",
                self.name,
                "-Q",
                queues,
                "-P",
                pool,
                "-c",
                str(concurrency),
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                *extra,
            ],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> Worker:
        wait_for(
            lambda: "ready." in self.output() or self.proc.poll() is not None,
            timeout,
            what=f"worker {self.name} ready",
        )
        if self.proc.poll() is not None:
            raise AssertionError(f"worker {self.name} exited:\n{self.output()[-3000:]}")
        return self

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        os.unlink(self.log.name)


def celery_app(env: dict[str, str]) -> Any:
    """A fresh producer-side app configured like tests/app/tasks.py, for sending tasks."""
    from celery import Celery

    app = Celery(
        "testapp-producer",
        broker=env["TEST_BROKER_URL"],
        backend=env.get("TEST_BACKEND_URL") or None,
    )
    prefix = env.get("TEST_KEYPREFIX", "")
    transport = {"global_keyprefix": prefix} if prefix else {}
    app.conf.update(
        broker_transport_options=transport,
        result_backend_transport_options=dict(transport),
        task_send_sent_event=env.get("TEST_SENT_EVENT", "1") == "1",
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_extended=True,
    )
    return app
