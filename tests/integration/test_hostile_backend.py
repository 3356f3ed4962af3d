"""Hostile records and events mixed into real traffic (issue 9), end to end.

A real worker runs a known task mix while the test, as an attacker with write access to the
Redis server would, stores hostile results in the backend, publishes them on the result
channels and publishes hostile event messages: lone surrogates in names, nesting past what
`str()` can print, dates `datetime` cannot hold, wrong types, pickle. The real exporter
(`python -m exporter`, every source on) must count every real task exactly, and `/metrics`,
`/api/sitrep` and `/api/tasks/recent` must answer 200 throughout and after a restart (the
saved state holds what it counted of the hostile records).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import httpx
import pytest
import redis

from tests.support.common import wait_for
from tests.support.hostile import check_exposition
from tests.support.ledger import COUNTERS, ExporterProc, send_mix
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker, celery_app

pytestmark = pytest.mark.integration
QUEUE = "hostile"
VIEW = "view-hostile-token"
REAL_NAMES = {"tests.add", "tests.fail_permanent", "tests.retry_once"}
DATE = "2026-01-02T03:04:05+00:00"


def deep(n: int) -> str:
    return "[" * n + '"x"' + "]" * n


def deep_event(n: int) -> bytes:
    return ('{"type": "task-oops", "exception": ' + deep(n) + "}").encode()


HOSTILE_RECORDS: list[bytes] = [
    b'{"status": "FAILURE", "name": "evil.t\\ud800", "queue": "q\\udfff", "worker": "w\\ud800",'
    b' "date_done": "' + DATE.encode() + b'", "result": {"exc_type": "E\\ud800",'
    b' "exc_message": ["m\\ud800"]}}',
    (
        '{"status": "FAILURE", "name": "evil.deep", "date_done": "' + DATE + '", "result": '
        '{"exc_type": "E", "exc_message": ' + deep(1000) + "}, "
        '"args": ' + deep(900) + ', "kwargs": {}}'
    ).encode(),
    ('{"status": "FAILURE", "result": {"exc_message": ' + deep(5000) + "}}").encode(),
    json.dumps(
        {
            "status": "FAILURE",
            "name": "evil.late",
            "date_done": "9999-12-31T23:59:59-23:59",
            "result": {"exc_type": "E", "exc_message": ["x"]},
        }
    ).encode(),
    json.dumps(
        {"status": "SUCCESS", "name": "evil.early", "date_done": "0001-01-01T00:00:00+23:59"}
    ).encode(),
    json.dumps(
        {"status": "SUCCESS", "name": 7, "queue": [1], "retries": "x", "date_done": 3}
    ).encode(),
    json.dumps({"status": "SUCCESS", "name": "evil\nname\x00\x7f", "date_done": DATE}).encode(),
    b'{"status": 5}',
    b"[1, 2]",
    b'"just a string"',
    b"null",
    b'{"status": "FAILURE", "name": "evil.nan", "result": NaN, "date_done": "'
    + DATE.encode()
    + b'"}',
    b"\x80\x04\x95pickled",
    b"",
]


def event_message(body: Any) -> bytes:
    text = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8", "surrogatepass")
    return json.dumps(
        {
            "body": base64.b64encode(text).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {},
            "properties": {"body_encoding": "base64", "delivery_info": {}},
        }
    ).encode()


HOSTILE_EVENTS = [
    event_message({"type": "worker-heartbeat", "hostname": "evil\ud800@host", "timestamp": 1e300}),
    event_message({"type": "worker-heartbeat", "hostname": "evil\n@host", "processed": "x"}),
    event_message({"type": "task-failed", "hostname": ["x"], "exception": "E\ud800('x')"}),
    event_message({"type": "task-succeeded", "uuid": "x" * 300, "name": "evil.long"}),
    event_message(deep_event(1000)),
    event_message(deep_event(5000)),
    event_message({"type": "worker-online", "hostname": 5, "timestamp": "now"}),
    b"not an envelope",
]


def real_counts(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (name, labels), value in samples.items():
        for counter in COUNTERS:
            if name != f"celery_task_{counter}_total":
                continue
            # Tasks revoked before they ran are stored without a name: "unknown". No hostile
            # record is REVOKED, so every revoked count is real.
            if counter == "revoked" or dict(labels).get("name") in REAL_NAMES:
                out[counter] += int(value)
    return out


class RealResults:
    """The backend's records of the real tasks only (backend_truth reads it)."""

    def __init__(self, results: redis.Redis) -> None:
        self.results = results

    def scan_iter(self, match: str, count: int) -> Any:
        for key in self.results.scan_iter(match=match, count=count):
            if not key.startswith(b"celery-task-meta-evil"):
                yield key

    def get(self, key: bytes) -> Any:
        return self.results.get(key)


def exact_or_lost_retry(got: Counter[str], truth: Counter[str], results: redis.Redis) -> bool:
    """Counts equal what was sent; or, as the accuracy tests allow (all_done there), Celery
    itself lost a retry's message: tasks stuck in RETRY, and counts equal the backend's."""
    from tests.support.ledger import backend_truth, stored_results

    if got == +truth:
        return True
    real = RealResults(results)
    stuck = sum(1 for m in stored_results(real) if m.get("status") == "RETRY")
    held = backend_truth(real)
    return (
        stuck > 0
        and got == +held
        and held["succeeded"] + stuck == truth["succeeded"]
        and all(held[c] == truth[c] for c in ("failed", "retried", "revoked"))
    )


def check_pages(exporter: ExporterProc) -> None:
    base = f"http://127.0.0.1:{exporter.port}"
    view = {"Authorization": f"Bearer {VIEW}"}
    page = httpx.get(f"{base}/metrics", timeout=10)
    assert page.status_code == 200, page.text[:500]
    for path in ("/api/sitrep", "/api/tasks/recent?limit=500", "/api/tasks/recent?status=FAILURE"):
        resp = httpx.get(f"{base}{path}", headers=view, timeout=10)
        assert resp.status_code == 200, (path, resp.text[:500])


def test_hostile_records_and_events_in_real_traffic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CE_VIEWER_TOKENS", VIEW)
    server = RedisServer()
    server.start()
    env = {
        "TEST_BROKER_URL": f"{server.url}/0",
        "TEST_BACKEND_URL": f"{server.url}/1",
        "TEST_DEFAULT_QUEUE": QUEUE,
    }
    results = redis.Redis(port=server.port, db=1)
    app = celery_app(env)
    worker = Worker(env, queues=QUEUE, pool="threads", concurrency=4).wait_ready()
    exporter = ExporterProc(
        [
            "--broker-url",
            env["TEST_BROKER_URL"],
            "--result-backend",
            env["TEST_BACKEND_URL"],
            "--reconcile-interval",
            "2",
        ],
        "hostile",
    )
    try:
        # Hostile records already stored when the exporter starts: its first reconcile and
        # every later one read them.
        for i, raw in enumerate(HOSTILE_RECORDS):
            results.set(f"celery-task-meta-evil-stored-{i}", raw)
        exporter.start()
        truth: Counter[str] = Counter()
        for round_ in range(3):
            truth += send_mix(app, 100, QUEUE)
            for i, raw in enumerate(HOSTILE_RECORDS):
                # As Celery's backend does: SET, then PUBLISH on the key's channel.
                results.set(f"celery-task-meta-evil-pub-{round_}-{i}", raw)
                results.publish(f"celery-task-meta-evil-pub-{round_}-{i}", raw)
            for message in HOSTILE_EVENTS:
                results.publish("/0.celeryev/worker.heartbeat", message)
                results.publish("/0.celeryev/task.failed", message)
            check_pages(exporter)

        refused: list[str] = []

        def exact() -> bool:
            try:
                check_pages(exporter)  # 200 at every look, not only at the end
            except AssertionError as exc:  # wait_for would retry it: keep it for the end
                refused.append(str(exc)[:300])
            return exact_or_lost_retry(real_counts(exporter.samples()), truth, results)

        try:
            wait_for(exact, 300, interval=0.5, what=f"real counts == {dict(truth)}")
        except AssertionError:
            got = real_counts(exporter.samples())
            raise AssertionError(
                f"got {dict(got)}, want {dict(truth)}\n{exporter.output()[-3000:]}"
            ) from None
        assert not refused, refused
        samples = exporter.samples()
        assert samples[("celery_exporter_source_up", (("source", "reconcile"),))] == 1.0
        assert samples[("celery_exporter_source_up", (("source", "pubsub"),))] == 1.0

        def failed_evil() -> float:
            return sum(
                v
                for (name, labels), v in exporter.samples().items()
                if name == "celery_task_failed_total" and dict(labels)["name"].startswith("evil")
            )

        # surrogate, deep, late, NaN: stored once + 3 published; they have a name but no
        # queue, so their counts wait out --label-grace before they show
        wait_for(lambda: failed_evil() == 4 * 4, 30, interval=0.5, what="16 evil failures")
        dropped = [
            v
            for (name, _l), v in samples.items()
            if name.startswith("celery_exporter_render_dropped")
        ]
        assert dropped and not any(dropped), "the decoders left something unrenderable"
        check_exposition(httpx.get(f"http://127.0.0.1:{exporter.port}/metrics").content)
        # A restart loads what it saved (the cleaned labels) and serves it.
        exporter.stop()
        exporter.start()
        check_pages(exporter)
        wait_for(exact, 120, interval=0.5, what="real counts exact after the restart")
        assert not refused, refused
        check_exposition(httpx.get(f"http://127.0.0.1:{exporter.port}/metrics").content)
    finally:
        exporter.cleanup()
        worker.stop()
        app.close()
        results.close()
        server.cleanup()
