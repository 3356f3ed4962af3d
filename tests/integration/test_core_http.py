"""The core daemon's process surface: HTTP endpoints, and start-up errors that exit 2 with one
line on stderr. Runs `python -m exporter` as a subprocess.
"""

from __future__ import annotations

import http.client
import signal
import socket
import time
from collections.abc import Callable

import pytest

from tests.support.common import wait_for
from tests.support.exporter_process import ExporterProcess, fresh_db, parse_metrics, run_cli
from tests.support.redisserver import RedisServer

pytestmark = pytest.mark.integration

RunExporter = Callable[..., ExporterProcess]


def test_http_endpoints(
    redis_server: RedisServer,
    run_exporter: RunExporter,
) -> None:
    url = fresh_db(redis_server, 9)
    # A first poll that takes 3 s (no worker answers stats): long enough to see "not ready".
    exporter = run_exporter(url, "--inspect-timeout", "3")
    status, _ctype, body = exporter.get("/-/ready")
    assert status == 503, body
    assert exporter.get("/-/healthy")[0] == 200
    wait_for(lambda: exporter.get("/-/ready")[0] == 200, 20, what="ready after the first poll")
    status, ctype, body = exporter.get("/")
    assert status == 200 and ctype.startswith("text/html")
    assert 'href="/metrics"' in body
    status, ctype, body = exporter.get("/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    samples = parse_metrics(body)
    assert samples[("celery_exporter_up", ())] == 1
    assert samples[("celery_exporter_polls_total", ())] >= 1
    assert samples[("celery_exporter_inspect_timeouts_total", (("method", "stats"),))] >= 1


@pytest.mark.parametrize(
    "args",
    [
        ("--broker-url", "foo://x"),
        ("--port", "99999"),
        ("--poll-interval", "0"),
        ("--host", "192.0.2.1"),  # not an address of this machine
        ("--port", "BUSY"),
    ],
    ids=["scheme", "port-range", "poll-interval", "host-not-local", "port-busy"],
)
def test_config_errors_exit_2_with_one_line(args: tuple[str, ...]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        argv = [a.replace("BUSY", port) for a in args]
        if "--host" not in argv:
            argv += ["--host", "127.0.0.1"]
        started = time.monotonic()
        result = run_cli("--broker-url", "redis://127.0.0.1:1/0", *argv)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("celery-ops-exporter: error: ")
    assert time.monotonic() - started < 20  # fails at once, never waits on the broker


def test_keep_alive_scrapes_are_not_delayed_by_nagle(
    redis_server: RedisServer,
    run_exporter: RunExporter,
) -> None:
    """Prometheus reuses its connection. With Nagle on the listener, each response waited
    for the scraper's delayed ACK: 44 ms p50 measured; it must be a few milliseconds."""
    exporter = run_exporter(fresh_db(redis_server, 10))
    wait_for(lambda: exporter.get("/-/ready")[0] == 200, 20, what="first poll")
    conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=10)
    latencies = []
    try:
        for _ in range(25):
            started = time.perf_counter()
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            assert resp.status == 200 and b"celery_exporter_up" in resp.read()
            latencies.append(time.perf_counter() - started)
    finally:
        conn.close()
    # 30 ms: under the 40 ms floor of a delayed ACK, with room for a loaded CI machine.
    assert sorted(latencies)[len(latencies) // 2] < 0.03, latencies


def test_sigterm_stops_gracefully(redis_server: RedisServer, run_exporter: RunExporter) -> None:
    exporter = run_exporter(fresh_db(redis_server, 12))
    wait_for(lambda: exporter.get("/-/ready")[0] == 200, 20, what="first poll")
    started = time.monotonic()
    exporter.proc.send_signal(signal.SIGTERM)
    assert exporter.proc.wait(15) == 0
    assert time.monotonic() - started < 10
    assert exporter.log().rstrip().endswith("exporter.daemon: stopped"), exporter.log()[-2000:]


def test_date_header_is_current_after_idle(
    redis_server: RedisServer, run_exporter: RunExporter
) -> None:
    """The server does not wake while idle to refresh its Date header: each request does."""
    from email.utils import parsedate_to_datetime

    exporter = run_exporter(fresh_db(redis_server, 13))
    wait_for(lambda: exporter.get("/-/ready")[0] == 200, 20, what="first poll")

    def date_of_response() -> float:
        conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=10)
        try:
            conn.request("GET", "/-/healthy")
            resp = conn.getresponse()
            resp.read()
            dates = [v for k, v in resp.getheaders() if k.lower() == "date"]
        finally:
            conn.close()
        assert len(dates) == 1, dates
        return parsedate_to_datetime(dates[0]).timestamp()

    first = date_of_response()
    wait_for(lambda: time.time() >= first + 3, 10, interval=0.2, what="3 idle seconds")
    before = int(time.time())
    second = date_of_response()
    assert before <= second <= time.time() + 1
