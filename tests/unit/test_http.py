"""The HTTP front: endpoints, /metrics auth, and the split listeners (--api-listen)."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from exporter.clock import FakeClock
from exporter.config import Config
from exporter.http import create_app
from exporter.poller import Poller
from exporter.state import State
from tests.support.cluster import FakeReader


def client(config: Config, **kwargs: bool) -> tuple[TestClient, State]:
    state = State(config, FakeClock())
    return TestClient(create_app(state, **kwargs)), state


def test_index_links_and_readiness() -> None:
    c, state = client(Config())
    assert 'href="/metrics"' in c.get("/").text
    assert c.get("/-/healthy").status_code == 200
    assert c.get("/-/ready").status_code == 503  # no poll yet
    Poller(state, FakeReader()).poll()
    assert c.get("/-/ready").status_code == 200
    body = c.get("/metrics").text
    assert "celery_exporter_up 1.0" in body


def test_openmetrics_is_negotiated() -> None:
    c, _ = client(Config())
    r = c.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def test_metrics_token_auth() -> None:
    c, _ = client(Config(metrics_auth="token", metrics_tokens=("s3cret",)))
    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = c.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and "celery_exporter_up" in r.text


def test_metrics_basic_auth() -> None:
    c, _ = client(Config(metrics_auth="basic", metrics_tokens=("s3cret",)))
    r = c.get("/metrics")
    assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"]
    good = base64.b64encode(b"prometheus:s3cret").decode()
    assert c.get("/metrics", headers={"Authorization": f"Basic {good}"}).status_code == 200


def test_split_listeners_serve_only_their_part() -> None:
    metrics_only, _ = client(Config(), api=False)
    api_only, _ = client(Config(viewer_tokens=("v",)), metrics=False)
    assert metrics_only.get("/metrics").status_code == 200
    assert metrics_only.get("/api/sitrep").status_code == 404
    assert metrics_only.get("/ui").status_code == 404
    assert api_only.get("/metrics").status_code == 404
    assert api_only.get("/api/sitrep").status_code == 401  # there, and it wants a token
