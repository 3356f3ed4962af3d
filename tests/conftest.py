"""Shared test fixtures: private Redis servers, the shared RabbitMQ, real Celery workers.

Fixtures only: the helpers they use (and that tests and benchmarks import) live in
tests/support/ (common: ROOT, free_port, wait_for; redisserver: RedisServer; workers:
Worker, celery_app; api, exporter_process, ledger, metrics, promql_names, ...).
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.redisserver import RedisServer
from tests.support.workers import Worker


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
