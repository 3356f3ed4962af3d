"""A stalled Redis (SIGSTOP of a private redis-server) under dozens of concurrent API requests
that need it: /metrics, /, /-/healthy and /-/ready answer promptly throughout, the requests
beyond --api-max-concurrent get 503 at once, and the API recovers when Redis does. On one
listener and with --api-listen (two servers in one process used to share one thread pool).

Before the fix, 50 lookups of unknown task ids held every thread of FastAPI's pool for 30 s
(10 s socket timeout, two retries) and the probes below waited as long.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.common import free_port, wait_for
from tests.support.exporter_process import ExporterProcess
from tests.support.redisserver import RedisServer

pytestmark = pytest.mark.integration

RunExporter = Callable[..., ExporterProcess]
TOKEN = "isolation-viewer-token-01"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROMPT = 2.0  # generous: "did not wait for Redis", not a speed claim (they take milliseconds)
LIMIT = 4  # --api-max-concurrent for this test
REQUESTS = 50


def _get(url: str, headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple:
    """(status, elapsed seconds, body, Retry-After); status 0 when no answer came."""
    request = urllib.request.Request(url, headers=headers or {})
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, body, retry = resp.status, resp.read().decode(), None
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
        retry = exc.headers.get("Retry-After")
    except OSError as exc:  # a timeout: the probe was blocked
        status, body, retry = 0, repr(exc), None
    return status, time.monotonic() - start, body, retry


@pytest.mark.parametrize("split", [False, True], ids=["one-listener", "api-listen"])
def test_stalled_redis_never_delays_metrics_and_excess_api_calls_get_503_at_once(
    private_redis: RedisServer, run_exporter: RunExporter, tmp_path: Path, split: bool
) -> None:
    tokens = tmp_path / "viewer"
    tokens.write_text(TOKEN + "\n")
    url = f"{private_redis.url}/0"  # broker and result backend: all of it stalls
    args = ["--viewer-token-file", str(tokens), "--api-max-concurrent", str(LIMIT)]
    api_port = free_port() if split else None
    if api_port:
        args += ["--api-listen", f"127.0.0.1:{api_port}"]
    exporter = run_exporter(url, *args)
    api = f"http://127.0.0.1:{api_port}" if api_port else exporter.base
    exporter.wait_value("celery_exporter_up", lambda v: v == 1)
    assert _get(f"{api}/api/tasks/not-there", AUTH)[0] == 404  # Redis answers: unknown id

    assert private_redis.proc is not None
    pid = private_redis.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(REQUESTS + 4) as pool:
            calls = [
                pool.submit(_get, f"{api}/api/tasks/unknown-{i}", AUTH) for i in range(REQUESTS)
            ]
            probes = []
            # Probe for longer than a stalled call holds its slot (2 s), so probes overlap it.
            until = time.monotonic() + 4.0
            while time.monotonic() < until:
                for path in ("/metrics", "/-/healthy", "/-/ready", "/"):
                    probes.append((path, *_get(exporter.base + path, timeout=10)))
                # Memory-only API reads do not need Redis either.
                probes.append(("/api/sitrep", *_get(f"{api}/api/sitrep", AUTH, timeout=10)))
            answers = [call.result() for call in calls]
    finally:
        os.kill(pid, signal.SIGCONT)

    slow = [(p, status, round(t, 2)) for p, status, t, _b, _r in probes if t >= PROMPT]
    assert not slow, f"probes waited for the stalled Redis: {slow[:10]}"
    assert all(status == 200 for _p, status, *_ in probes), [p[:2] for p in probes][:10]
    assert len(probes) >= 20
    assert all(status == 503 for status, *_ in answers), [a[:3] for a in answers]
    busy = [a for a in answers if "--api-max-concurrent" in a[2]]
    # Arrivals span well under the 2 s a stalled call holds its slot: about LIMIT calls wait
    # for Redis, every other one is refused at once, with a Retry-After.
    assert len(busy) >= REQUESTS - 5 * LIMIT, len(busy)
    assert all(t < PROMPT and retry for _s, t, _b, retry in busy)
    waited = [a for a in answers if a not in busy]
    assert all("unavailable" in body for _s, _t, body, _r in waited)

    # Redis is back: the API answers again by itself, and the refusals were counted.
    wait_for(lambda: _get(f"{api}/api/tasks/not-there", AUTH)[0] == 404, 15, what="API back")
    assert (exporter.value("celery_exporter_api_overloaded_total") or 0) >= len(busy)
    lines = [ln for ln in exporter.log().splitlines() if "API: result backend Redis" in ln]
    assert len([ln for ln in lines if "once per outage" in ln]) == 1, lines  # not per call
