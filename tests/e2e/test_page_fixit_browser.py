"""The operator page in headless Chromium against a real exporter API and real workers: load
it, enter a token, see the failures, propose a plan, approve it, watch the retries succeed."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI

from exporter.api import build_router, install_error_handlers
from exporter.celery_io import CeleryIO
from exporter.config import Config
from exporter.state import State
from tests.support.api import OPERATOR, TRANSIENT, results_source
from tests.support.common import wait_for
from tests.support.workers import celery_app

pytestmark = pytest.mark.e2e


def _status(client: redis.Redis, task_id: str) -> str | None:
    raw = client.get(f"celery-task-meta-{task_id}")
    return json.loads(raw)["status"] if raw else None


def test_page_propose_approve_and_see_retries_succeed(
    browser: Any, serve: Any, redis_server: Any, start_worker: Any, unique: str, tmp_path: Path
) -> None:
    url = f"{redis_server.url}/11"
    queue = f"page-{unique}"
    env = {"TEST_BROKER_URL": url, "TEST_BACKEND_URL": url, "TEST_DEFAULT_QUEUE": queue}
    start_worker(env, queues=queue, concurrency=1)
    producer = celery_app(env)
    backend = redis.Redis.from_url(url)
    marker = tmp_path / "healed"
    config = Config(
        broker_url=url,
        result_backend=url,
        operator_tokens=(OPERATOR,),
        transient_exceptions=TRANSIENT,
    )
    state = State(config)
    # The ledger's real pub/sub source feeds the state for the whole test, as in the daemon.
    live = ExitStack()
    live.enter_context(results_source(state))
    failed = [
        producer.send_task("tests.fail_transient", args=[str(marker)], queue=queue).id
        for _ in range(2)
    ]
    wait_for(
        lambda: all(_status(backend, t) == "FAILURE" for t in failed), 60, what="failures stored"
    )
    wait_for(
        lambda: all((r := state.ledger.get(t)) and r.state == "FAILURE" for t in failed),
        30,
        what="failures in the ledger",
    )
    io = CeleryIO(config)
    app = FastAPI()
    app.include_router(build_router(state, io))
    install_error_handlers(app)
    base = serve(app)

    from playwright.sync_api import expect

    page = browser.new_page()
    problems: list[str] = []
    bad_responses: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on(
        "response",
        lambda r: bad_responses.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(f"{base}/ui")
        page.wait_for_selector("text=Enter a token")
        page.fill("#token", OPERATOR)
        page.click("#save-token")
        page.wait_for_selector("#failures >> text=Fail transient")
        assert page.locator("#failures tr").count() == 2
        assert OPERATOR not in page.content()  # the token is not echoed into the page

        page.select_option("#mode", "conservative")
        page.click("#propose")
        page.wait_for_selector("#approve")
        assert page.locator(".plan-actions li").count() == 2
        assert "send tests.fail_transient again" in page.inner_text("#plan")
        marker.write_text("ok")
        page.click("#approve")  # asks once more, with the count, before anything runs
        assert "Run 2 action(s) now?" in page.inner_text("#confirm")
        page.click("#confirm-approve")
        page.wait_for_selector("#outcomes")
        # A locator wait, not wait_for_function: the page's CSP forbids eval, rightly.
        expect(page.locator(".new-task.ok")).to_have_count(2, timeout=60_000)
        assert "SUCCESS" in page.inner_text("#outcomes")
        assert "executed" in page.inner_text("#plan-status")
        # The only failed loads allowed: polling a retried task before its result is stored.
        unexpected = [
            r for r in bad_responses if not r.startswith("404 ") or "/api/tasks/" not in r
        ]
        assert not unexpected, unexpected
        assert not [p for p in problems if "Failed to load resource" not in p], problems
    finally:
        page.close()
        live.close()
        io.close()
        producer.close()


def test_page_with_a_viewer_token_reads_but_cannot_act(browser: Any, serve: Any) -> None:
    import fakeredis

    from tests.support.api import VIEWER, failure, make_app, make_config, new_state

    config = make_config()
    state = new_state(config)
    state.ledger.apply(failure("f-1"))
    base = serve(make_app(state, CeleryIO(config), fakeredis.FakeRedis()))
    page = browser.new_page()
    try:
        page.goto(f"{base}/ui")
        page.fill("#token", "wrong-token")
        page.click("#save-token")
        page.wait_for_selector("#error >> text=401: invalid token")
        page.fill("#token", VIEWER)
        page.click("#save-token")
        page.wait_for_selector("#failures >> text=Fail transient f-1")
        page.click("#propose")
        page.wait_for_selector("#error >> text=needs the operator role")
        assert page.locator("#approve").count() == 0
        assert page.evaluate("document.cookie") == ""
    finally:
        page.close()


def test_page_shows_an_interrupted_plan_and_proposes_the_rest(
    browser: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fakeredis
    from fastapi.testclient import TestClient

    from exporter.apicounters import ApiCounters
    from exporter.remediation import executor
    from exporter.remediation.service import Remediation
    from exporter.remediation.store import PlanStore
    from tests.support.api import HEAD_O, T0, failure, make_app, make_config, new_state

    class Crash(BaseException):
        pass

    config = make_config()
    state = new_state(config)
    state.ledger.apply_many([failure(t, at=T0 - i) for i, t in enumerate(["t1", "t2", "t3"])])
    client = fakeredis.FakeRedis()
    io = CeleryIO(config)
    app = make_app(state, io, client)
    plan = TestClient(app).post("/api/fix-it", json={}, headers=HEAD_O).json()
    real, calls = executor.control.send_retry, [0]

    def send(*args: Any, **kwargs: Any) -> str:
        calls[0] += 1
        if calls[0] == 2:
            raise Crash("the exporter dies while sending the second retry")
        return real(*args, **kwargs)

    monkeypatch.setattr(executor.control, "send_retry", send)
    fix = Remediation(state, io, client, PlanStore(client), state.attached(ApiCounters))
    with pytest.raises(Crash):
        fix.decide("operator#x", plan["id"], plan["digest"])
    client.delete(f"celery-ops-exporter:plan:{plan['id']}:lease")  # as if it had expired
    base = serve(app)
    page = browser.new_page()
    try:
        page.goto(f"{base}/ui")
        page.fill("#token", OPERATOR)
        page.click("#save-token")
        page.fill("#plan-id", plan["id"])
        page.click("#open-plan")
        page.wait_for_selector("#plan-interrupted")
        assert "1 of 3 action(s) ran" in page.inner_text("#plan-interrupted")
        assert "interrupted" in page.inner_text("#plan-status")
        outcomes = page.inner_text("#outcomes")
        assert "t1: ok" in outcomes and "t2: unknown in doubt" in outcomes
        assert page.locator("#not-run li").count() == 1
        assert "t3" in page.inner_text("#not-run")
        page.click("#propose-rest")
        page.wait_for_selector("#approve")
        assert page.locator(".plan-actions li").count() == 1
        assert "pending" in page.inner_text("#plan-status")
    finally:
        page.close()
        io.close()
