"""Who may call what: every endpoint against no token, a wrong token, viewer and operator;
actions disabled without an operator token; the /metrics guard."""

from __future__ import annotations

import base64

import fakeredis
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from exporter.api import check_metrics_auth, install_error_handlers
from exporter.api.auth import principal_name
from exporter.celery_io import CeleryIO
from tests.support.api import HEAD_O, HEAD_V, OPERATOR, VIEWER, make_app, make_config, new_state

# (method, path, json body, role needed)
ENDPOINTS = [
    ("GET", "/api/sitrep", None, "viewer"),
    ("GET", "/api/tasks/recent", None, "viewer"),
    ("GET", "/api/tasks/some-id", None, "viewer"),
    ("GET", "/api/plans/some-plan", None, "viewer"),
    ("POST", "/api/fix-it", {"mode": "conservative"}, "operator"),
    ("POST", "/api/approve", {"plan_id": "p", "digest": "d"}, "operator"),
    ("GET", "/api/audit", None, "operator"),
]
TOKENS = {"none": None, "wrong": "not-a-token", "viewer": VIEWER, "operator": OPERATOR}


@pytest.fixture
def client() -> TestClient:
    config = make_config()
    state = new_state(config)
    return TestClient(make_app(state, CeleryIO(config), fakeredis.FakeRedis()))


@pytest.mark.parametrize("who", list(TOKENS))
@pytest.mark.parametrize(("method", "path", "body", "role"), ENDPOINTS)
def test_auth_matrix(
    client: TestClient, who: str, method: str, path: str, body: object, role: str
) -> None:
    token = TOKENS[who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = client.request(method, path, json=body, headers=headers)
    if who in ("none", "wrong"):
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Bearer")
    elif who == "viewer" and role == "operator":
        assert resp.status_code == 403
        assert "operator role" in resp.json()["message"]
    else:
        # Allowed: whatever the answer (404 for an unknown id), it is not an auth refusal.
        assert resp.status_code not in (401, 403), resp.text
    if resp.status_code >= 400:
        assert resp.json()["message"]


def test_actions_disabled_without_operator_token() -> None:
    config = make_config(operator_tokens=())
    app = make_app(new_state(config), CeleryIO(config), fakeredis.FakeRedis())
    client = TestClient(app)
    resp = client.post("/api/fix-it", json={}, headers=HEAD_V)
    assert resp.status_code == 403
    assert "no operator token is configured" in resp.json()["message"]
    assert client.get("/api/sitrep", headers=HEAD_V).status_code == 200


def test_no_tokens_at_all_disables_the_api() -> None:
    config = make_config(operator_tokens=(), viewer_tokens=())
    app = make_app(new_state(config), CeleryIO(config), fakeredis.FakeRedis())
    resp = TestClient(app).get("/api/sitrep", headers=HEAD_V)
    assert resp.status_code == 403
    assert "no token is configured" in resp.json()["message"]


def test_wrong_scheme_and_prefix_of_a_token_are_refused(client: TestClient) -> None:
    for header in (
        f"Basic {OPERATOR}",
        f"Bearer {OPERATOR[:-1]}",
        f"Bearer {OPERATOR}x",
        "Bearer",
        "",
    ):
        assert client.get("/api/sitrep", headers={"Authorization": header}).status_code == 401


def test_principal_is_derived_from_the_token_not_the_client(client: TestClient) -> None:
    resp = client.post(
        "/api/fix-it", json={"mode": "conservative", "proposed_by": "mallory"}, headers=HEAD_O
    )
    assert resp.status_code == 201
    assert resp.json()["proposed_by"] == principal_name("operator", OPERATOR)
    assert OPERATOR not in resp.text


def _metrics_app(**changes: object) -> TestClient:
    config = make_config(**changes)
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/metrics")
    def metrics(request: Request) -> dict[str, str]:
        check_metrics_auth(request, config)
        return {"ok": "yes"}

    return TestClient(app)


def test_metrics_open_by_default() -> None:
    assert _metrics_app().get("/metrics").status_code == 200


def test_metrics_token_mode() -> None:
    client = _metrics_app(metrics_auth="token", metrics_tokens=("m1", "m2"))
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer m2"}).status_code == 200
    basic = base64.b64encode(b"prom:m1").decode()
    assert client.get("/metrics", headers={"Authorization": f"Basic {basic}"}).status_code == 401


def test_metrics_basic_mode() -> None:
    client = _metrics_app(metrics_auth="basic", metrics_tokens=("m1",))
    resp = client.get("/metrics")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Basic")
    good = base64.b64encode(b"prometheus:m1").decode()
    bad = base64.b64encode(b"prometheus:m2").decode()
    assert client.get("/metrics", headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic !!!"}).status_code == 401
