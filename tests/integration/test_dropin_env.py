"""The daemon configured only through celery-exporter's `CE_*` variables, as its Helm chart or
compose file would set them: it serves on that host and port, /health answers as the
reference's does, every series carries the prefix and the static labels, and the start-up
warnings (unknown variable, pickle) are one line each."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.common import ROOT, free_port, wait_for
from tests.support.exporter_process import fresh_db, http_get, parse_metrics
from tests.support.redisserver import RedisServer

pytestmark = pytest.mark.integration


def test_env_only_configuration_of_a_real_daemon(redis_server: RedisServer) -> None:
    port = free_port()
    url = fresh_db(redis_server, 11)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CE_")}
    env.update(
        PYTHONPATH=str(ROOT),
        CE_BROKER_URL=url,
        CE_HOST="127.0.0.1",
        CE_PORT=str(port),
        CE_POLL_INTERVAL="1",
        CE_INSPECT_TIMEOUT="0.5",
        CE_QUEUES="reports,mail",
        CE_METRIC_PREFIX="myapp_",
        CE_STATIC_LABEL="cluster=eu1  shard=01",
        CE_BROKER_TRANSPORT_OPTION="priority_steps=[0,3,6,9] visibility_timeout=3600",
        CE_ACCEPT_CONTENT="json,pickle",
        CE_LOG_LEVEL="SUCCESS",
        CE_RETRY_INTERVAL="2",
        CE_BORKER_URL="typo",
    )
    with tempfile.NamedTemporaryFile(prefix="ce-dropin-", suffix=".log") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        try:

            def polled() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(Path(log.name).read_text())
                status, _c, body = http_get(base + "/health", timeout=2)
                return status == 200 and body.startswith("Connected to the broker")

            wait_for(polled, 30, interval=0.2, what="/health after the first poll")
            status, ctype, body = http_get(base + "/health")
            assert ctype.startswith("text/html")
            assert body == f"Connected to the broker {url}"
            status, _c, text = http_get(base + "/metrics")
            assert status == 200
            samples = parse_metrics(text)
            assert samples, text
            for (name, labels), _value in samples.items():
                assert name.startswith("myapp_"), name
                assert ("cluster", "eu1") in labels and ("shard", "01") in labels, (name, labels)
            key = ("myapp_queue_length", (("cluster", "eu1"), ("queue_name", "reports"),
                                          ("shard", "01")))  # fmt: skip
            assert samples[key] == 0
            assert samples[("myapp_exporter_up", (("cluster", "eu1"), ("shard", "01")))] == 1
        finally:
            proc.terminate()
            proc.wait(15)
        lines = Path(log.name).read_text().splitlines()
    unknown = [line for line in lines if "unknown environment variables" in line]
    assert len(unknown) == 1 and unknown[0].endswith("CE_BORKER_URL"), lines
    assert sum("pickle is never decoded" in line for line in lines) == 1, lines
    assert not any("Traceback" in line for line in lines), lines
