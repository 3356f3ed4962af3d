"""Shared test fixtures: private Redis servers, the shared RabbitMQ, real Celery workers.

Tests never sleep to wait: `wait_for` polls a condition until a deadline.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    cond: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll `cond` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)  # polling interval of a deadline wait, not a fixed sleep
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_exc!r}")


class RedisServer:
    """A private redis-server on a free loopback port; stop/start keep the data if asked."""

    def __init__(self, persist: bool = False) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="ce-redis-")
        self.persist = persist
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        if self.persist:
            args[-4:] = ["--save", "", "--appendonly", "yes"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        wait_for(lambda: client.ping(), 10, what=f"redis on {self.port}")
        client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGTERM: Redis fsyncs its append-only file before exiting, so data is kept.
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private Redis for the whole session; tests pick their own DB numbers."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, for tests that stop, restart or flood it."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = RedisServer(persist=True)
    server.start()
    yield server
    server.cleanup()


RABBIT_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    host_port = RABBIT_URL.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), 2).close()
    except OSError:
        pytest.fail(f"RabbitMQ is not reachable at {host_port}: .ci/run starts it")
    return RABBIT_URL


@pytest.fixture
def unique() -> str:
    """A short unique string for queue names and key prefixes."""
    return uuid.uuid4().hex[:10]


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


@pytest.fixture
def start_worker() -> Iterator[Callable[..., Worker]]:
    """start_worker(env, queues=..., ...) -> a ready Worker; all are stopped after the test."""
    workers: list[Worker] = []

    def start(env: dict[str, str], wait: bool = True, **kwargs: Any) -> Worker:
        worker = Worker(env, **kwargs)
        workers.append(worker)
        return worker.wait_ready() if wait else worker

    yield start
    for worker in workers:
        worker.stop()


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
