"""RedBeat's schedule read over the URLs RedBeat itself connects with: a real `celery beat`
writes its schedule through a private redis-sentinel (RedBeat's `redis-sentinel://` with its
`sentinels` and `service_name` options) or over TLS (`rediss://` with a private CA), and the
exporter's reader finds the entries and the lock through the same kind of URL: Sentinel as
`redis-sentinel://` or kombu's `sentinel://` (master by option or by the master_name transport
option), TLS with --broker-ssl-option or with the options in the URL's query. A wrong master
name or a missing CA is a failed read, never a silent success."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from exporter.beat.build import beat_sources
from exporter.beat.redbeat import RedBeatReader
from exporter.beat.redbeat_client import redis_client
from exporter.beat.source import BeatSource, board_for
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.state import State
from tests.support.beat_process import Beat
from tests.support.common import free_port, wait_for
from tests.support.exporter_process import fresh_db
from tests.support.redisserver import RedisServer

pytest.importorskip("redbeat")
pytestmark = pytest.mark.integration
PREFIX = "rburl:"


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ce-rburl-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
        proc.wait(10)


def _spawn(args: list[str], procs: list[subprocess.Popen[bytes]]) -> None:
    procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def _read(factory: Any) -> tuple[bool, set[str], bool | None, str | None]:
    """One read by the exporter's RedBeat source: up, entry names, lock held, last error."""
    state = State(Config(), FakeClock())
    source = BeatSource(state, RedBeatReader(factory, PREFIX))
    source.run()
    source.stop()
    (view,) = board_for(state).views()
    read = view.read
    names = {e.name for e in read.entries} if read else set()
    lock = read.lock.held if read and read.lock else None
    return view.up, names, lock, view.last_error


def _beat_wrote(factory: Any) -> None:
    wait_for(lambda: _read(factory)[1:3] == ({"tick", "broken"}, True), 30,
             what="beat's entries and lock, read by the exporter")  # fmt: skip


def test_redbeat_through_sentinel(
    private_redis: RedisServer, workdir: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    master, sentinel = free_port(), free_port()
    _spawn(["redis-server", "--port", str(master), "--bind", "127.0.0.1", "--save", "",
            "--dir", str(workdir)], procs)  # fmt: skip
    wait_for(redis.Redis(port=master).ping, 10, what="redis master")
    conf = workdir / "sentinel.conf"
    conf.write_text(f"port {sentinel}\nbind 127.0.0.1\ndir {workdir}\n"
                    f"sentinel monitor ce-master 127.0.0.1 {master} 1\n")  # fmt: skip
    _spawn(["redis-server", str(conf), "--sentinel"], procs)
    wait_for(lambda: redis.Redis(port=sentinel).sentinel_get_master_addr_by_name("ce-master"),
             15, what="sentinel knows the master")  # fmt: skip
    broker = fresh_db(private_redis, 0)
    beat = Beat({"TEST_BROKER_URL": broker, "TEST_BACKEND_URL": broker,
                 "TEST_REDBEAT_URL": f"redis-sentinel://127.0.0.1:{sentinel}/0",
                 "TEST_REDBEAT_SENTINELS": f"127.0.0.1:{sentinel}",
                 "TEST_REDBEAT_SERVICE": "ce-master", "TEST_REDBEAT_PREFIX": PREFIX})  # fmt: skip
    try:
        # RedBeat's own form, the master named as RedBeat's service_name
        url = f"redis-sentinel://127.0.0.1:{sentinel}/0"
        _beat_wrote(lambda: redis_client(url, "ce-master"))
        # the schedule really is on the master the sentinel names
        assert redis.Redis(port=master).zcard(PREFIX + ":schedule") == 2
        # kombu's form, the master from the master_name transport option
        kombu = f"sentinel://127.0.0.1:{sentinel}/0;sentinel://127.0.0.1:{free_port()}/0"
        up, names, lock, _ = _read(lambda: redis_client(kombu, None, {"master_name": "ce-master"}))
        assert (up, names, lock) == (True, {"tick", "broken"}, True)
        # as the daemon builds it from its options
        config = Config(beat_redbeat_url=url, redbeat_key_prefix=PREFIX,
                        redbeat_sentinel_master="ce-master")  # fmt: skip
        state = State(config, FakeClock())
        [built] = beat_sources(state)
        built.run()
        built.stop()
        [view] = board_for(state).views()
        assert view.up and view.read is not None and len(view.read.entries) == 2
        # a master the sentinel does not know: a failed read that says so
        up, names, _, error = _read(lambda: redis_client(url, "nope"))
        assert not up and names == set()
        assert error is not None and "MasterNotFoundError" in error
    finally:
        beat.stop()
        os.unlink(beat.log.name)


def test_redbeat_over_tls(
    private_redis: RedisServer, workdir: Path, procs: list[subprocess.Popen[bytes]]
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
    broker = fresh_db(private_redis, 0)
    url = f"rediss://127.0.0.1:{port}/0"
    beat = Beat({"TEST_BROKER_URL": broker, "TEST_BACKEND_URL": broker, "TEST_REDBEAT_URL": url,
                 "TEST_REDBEAT_SSL_CA": str(cert), "TEST_REDBEAT_PREFIX": PREFIX})  # fmt: skip
    try:
        # --broker-ssl-option as Celery spells it (RedBeat's redbeat_redis_use_ssl default)
        ssl = {"ssl_cert_reqs": "CERT_REQUIRED", "ca_certs": str(cert)}
        _beat_wrote(lambda: redis_client(url, ssl=ssl))
        # or the options in the URL's query, Celery's spelling too
        query = f"{url}?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs={cert}"
        assert _read(lambda: redis_client(query))[:3] == (True, {"tick", "broken"}, True)
        # certificates are verified: without the CA the read fails
        up, _, _, error = _read(lambda: redis_client(url))
        assert not up and error is not None and "certificate verify failed" in error
    finally:
        beat.stop()
        os.unlink(beat.log.name)
