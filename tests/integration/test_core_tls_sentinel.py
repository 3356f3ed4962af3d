"""TLS (rediss://) and Sentinel broker URLs work as Celery accepts them.

Each test starts its own redis-server (with TLS, or a master plus a sentinel) on free
loopback ports, queues messages with a Celery producer through the same URL, and checks the
real daemon reports them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.common import free_port, wait_for
from tests.support.exporter_process import ExporterProcess
from tests.support.workers import celery_app

pytestmark = pytest.mark.integration


def heartbeat_reaches_the_lean_consumer(app: Any, exporter: ExporterProcess) -> None:
    """The lean event consumer subscribed through the same URL: a published event arrives."""
    assert "lean Redis consumer" in exporter.log()

    def sent_and_counted() -> bool:
        with app.connection_for_write() as conn:
            dispatcher = app.events.Dispatcher(conn, hostname="celery@tls-check", enabled=True)
            dispatcher.send("worker-heartbeat", processed=0, active=0)
            dispatcher.close()
        value = exporter.value("celery_exporter_events_received_total", type="worker-heartbeat")
        return bool(value)

    wait_for(sent_and_counted, 30, interval=0.5, what="an event through the lean consumer")


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ce-tls-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _spawn(args: list[str], procs: list[subprocess.Popen[bytes]]) -> None:
    procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
        proc.wait(10)


def test_tls_broker(
    workdir: Path,
    procs: list[subprocess.Popen[bytes]],
    run_exporter: Callable[..., ExporterProcess],
) -> None:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    _spawn(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file",
         str(cert), "--tls-auth-clients", "no", "--save", "", "--dir", str(workdir)],
        procs,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(cert))
    wait_for(client.ping, 10, what="TLS redis")
    url = f"rediss://127.0.0.1:{port}/0"
    app = celery_app({"TEST_BROKER_URL": url, "TEST_SENT_EVENT": "0"})
    app.conf.broker_use_ssl = {"ssl_cert_reqs": "required", "ssl_ca_certs": str(cert)}
    for _ in range(4):
        app.send_task("tests.add", args=(1, 2), queue="tlsq")
    app.pool.force_close_all()
    # The result backend over TLS too, its options in the URL as Celery documents them.
    backend = f"{url}?ssl_cert_reqs=required&ssl_ca_certs={cert}"
    exporter = run_exporter(
        url, "-Q", "tlsq", "--result-backend", backend,
        "--broker-ssl-option", "ssl_cert_reqs=required",
        "--broker-ssl-option", f"ssl_ca_certs={cert}",
    )  # fmt: skip
    exporter.wait_value("celery_exporter_up", lambda v: v == 1.0)
    assert exporter.wait_value("celery_queue_length", lambda v: v == 4.0, queue_name="tlsq")
    for source in ("events", "pubsub", "reconcile"):
        exporter.wait_value("celery_exporter_source_up", lambda v: v == 1.0, source=source)
    heartbeat_reaches_the_lean_consumer(app, exporter)


def test_sentinel_broker(
    workdir: Path,
    procs: list[subprocess.Popen[bytes]],
    run_exporter: Callable[..., ExporterProcess],
) -> None:
    master, sentinel = free_port(), free_port()
    _spawn(["redis-server", "--port", str(master), "--bind", "127.0.0.1", "--save", "",
            "--dir", str(workdir)], procs)  # fmt: skip
    wait_for(redis.Redis(port=master).ping, 10, what="redis master")
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor ce-master 127.0.0.1 {master} 1\n"
    )
    _spawn(["redis-server", str(conf), "--sentinel"], procs)
    wait_for(
        lambda: redis.Redis(port=sentinel).sentinel_get_master_addr_by_name("ce-master"),
        15,
        what="sentinel knows the master",
    )
    url = f"sentinel://127.0.0.1:{sentinel}/0"
    app = celery_app({"TEST_BROKER_URL": url, "TEST_SENT_EVENT": "0"})
    app.conf.broker_transport_options = {"master_name": "ce-master"}
    for _ in range(3):
        app.send_task("tests.add", args=(1, 2), queue="sentq")
    app.pool.force_close_all()
    # The tasks really are on the master, where the sentinel pointed the producer.
    assert redis.Redis(port=master).llen("sentq") == 3
    exporter = run_exporter(
        url, "-Q", "sentq", "--broker-transport-option", "master_name=ce-master"
    )
    exporter.wait_value("celery_exporter_up", lambda v: v == 1.0)
    assert exporter.wait_value("celery_queue_length", lambda v: v == 3.0, queue_name="sentq")
    # The event and result-backend sources reach the master through the sentinel too.
    for source in ("events", "pubsub", "reconcile"):
        exporter.wait_value("celery_exporter_source_up", lambda v: v == 1.0, source=source)
    heartbeat_reaches_the_lean_consumer(app, exporter)
