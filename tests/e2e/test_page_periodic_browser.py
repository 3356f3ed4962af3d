"""The page's Periodic view in headless Chromium against a real `celery beat` with RedBeat and
a real worker (tests/app/beat.py: "tick" succeeds, "broken" fails): the healthy entry shows ok
with its last success, the broken one failing; beat stopped, "tick" falls overdue and shows
missed, and "Propose run now" gives a plan whose confirmed approval runs it on the worker.
Hostile entry names render as text."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from fastapi import FastAPI

from exporter.api import build_router, install_error_handlers
from exporter.api.periodic import build_periodic
from exporter.beat.redbeat import RedBeatReader
from exporter.beat.redbeat_client import redis_client
from exporter.beat.source import BeatSource
from exporter.celery_io import CeleryIO
from exporter.config import Config
from exporter.state import State
from exporter.taskdata import SUCCESS
from tests.e2e.test_page_browse_browser import _open, events_source
from tests.support.api import OPERATOR, results_source
from tests.support.beat_process import Beat
from tests.support.common import wait_for
from tests.support.exporter_process import fresh_db

pytest.importorskip("redbeat")
pytestmark = pytest.mark.e2e
PREFIX = "rbui:"


def _states(state: State) -> dict[str, str]:
    return {e.name: e.state for e in build_periodic(state).entries}


def _row(page: Any, name: str) -> Any:
    return page.locator(f"#p-rows tr[data-entry='redbeat/{name}']")


def test_periodic_view_ok_failing_missed_and_run_now(
    browser: Any, serve: Any, private_redis: Any, start_worker: Any, unique: str
) -> None:
    from playwright.sync_api import expect

    url = fresh_db(private_redis, 0)
    queue = f"beatui-{unique}"
    env = {
        "TEST_BROKER_URL": url,
        "TEST_BACKEND_URL": url,
        "TEST_DEFAULT_QUEUE": queue,
        "TEST_REDBEAT_URL": url,
        "TEST_REDBEAT_PREFIX": PREFIX,
        "TEST_BEAT_EVERY": "2",
        "TEST_BEAT_QUEUE": queue,
    }
    start_worker(env, queues=queue)
    config = Config(broker_url=url, result_backend=url, operator_tokens=(OPERATOR,), beat_grace=2.0)
    state = State(config)
    io = CeleryIO(config)
    source = BeatSource(state, RedBeatReader(lambda: redis_client(url), PREFIX))
    app = FastAPI()
    app.include_router(build_router(state, io))
    install_error_handlers(app)
    beat = Beat(env)
    try:
        with results_source(state), events_source(state, io):

            def healthy() -> bool:
                source.run()  # a read of RedBeat's schedule, as the daemon's job does
                return _states(state) == {"tick": "ok", "broken": "failing"}

            wait_for(healthy, 30, what="tick ok and broken failing")
            base = serve(app)
            page, problems = _open(browser, f"{base}/ui#periodic")
            try:
                tick, broken = _row(page, "tick"), _row(page, "broken")
                expect(tick.locator(".state")).to_have_text("ok")
                expect(broken.locator(".state")).to_have_text("failing")
                assert "p-ok" in (tick.locator(".state").get_attribute("class") or "")
                assert "p-failing" in (broken.locator(".state").get_attribute("class") or "")
                cells = tick.locator("td")
                assert "every 2.0 s" in cells.nth(3).inner_text()
                success = cells.nth(7).inner_text()  # last success: date and time zone
                assert success != "never seen" and str(time.gmtime().tm_year) in success
                assert "beat up" in page.inner_text("#p-sources")
                assert tick.locator("button.run-now").count() == 0  # not missed: no button

                beat.stop()  # beat releases RedBeat's lock; tick falls overdue

                def missed() -> bool:
                    source.run()
                    return _states(state).get("tick") == "missed"

                wait_for(missed, 20, what="tick missed after beat stopped")
                before = {t for t, s in state.ledger.last_times().items() if SUCCESS in s}
                assert "tests.add" in before
                page.reload()
                expect(tick.locator(".state")).to_have_text("missed")
                assert "p-missed" in (tick.locator(".state").get_attribute("class") or "")
                assert "BEAT DOWN" in page.inner_text("#p-sources")
                assert "this would run twice" in tick.inner_text()  # beat is down: a warning
                tick.locator("button.run-now").click()
                expect(page.locator("#periodic-plan .plan-actions li")).to_have_count(1)
                plan_text = page.inner_text("#periodic-plan")
                assert "run_entry" in plan_text and "tick" in plan_text and queue in plan_text
                assert page.locator("#confirm").is_hidden()
                page.click("#approve")
                expect(page.locator("#confirm")).to_contain_text("Run 1 action(s) now?")
                page.click("#confirm-approve")
                expect(page.locator("#outcomes")).to_contain_text("ok")
                expect(page.locator(".new-task.ok")).to_have_count(1, timeout=30_000)
                new_id = page.locator(".new-task").get_attribute("data-task-id") or ""

                def counted() -> bool:  # the page may read the backend before the ledger has it
                    rec = state.ledger.get(new_id)
                    return rec is not None and rec.state == SUCCESS and rec.name == "tests.add"

                wait_for(counted, 30, what="the sent task's success in the ledger")
                assert not [p for p in problems if "Failed to load resource" not in p], problems
            finally:
                page.close()
    finally:
        beat.stop()
        io.close()
        if os.path.exists(beat.log.name):
            os.unlink(beat.log.name)


def test_hostile_entry_names_render_as_text(browser: Any, serve: Any) -> None:
    import fakeredis
    from playwright.sync_api import expect

    from tests.support.api import make_app, make_config, new_state

    hostile = '<script>window.pwned=1</script><img src=x onerror="window.pwned=1">'
    r = fakeredis.FakeRedis()
    definition = {"name": hostile + "n" * 10_240, "task": hostile, "enabled": True,
                  "schedule": {"__type__": "interval", "every": 5, "relative": False}}  # fmt: skip
    r.hset(PREFIX + "h", "definition", json.dumps(definition))
    r.zadd(PREFIX + ":schedule", {PREFIX + "h": 1.0})  # long overdue: missed, with a button
    config = make_config()
    state = new_state(config)
    BeatSource(state, RedBeatReader(lambda: r, PREFIX)).run()
    base = serve(make_app(state, CeleryIO(config), fakeredis.FakeRedis()))
    page, problems = _open(browser, f"{base}/ui#periodic")
    try:
        expect(page.locator("#p-rows .state")).to_have_text(["missed"])
        text = page.inner_text("#p-rows")
        assert hostile in text and "nnnn" in text
        assert page.locator("img").count() == 0 and page.locator("body script").count() == 2
        assert page.evaluate("window.pwned") is None
        assert not problems, problems
    finally:
        page.close()
