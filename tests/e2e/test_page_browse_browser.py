"""The page's task browser, task detail and trends in headless Chromium, against a real API,
real workers and the ledger's real sources (events and result pub/sub); and hostile values in
every new field rendered as text."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from exporter.api import build_router, install_error_handlers
from exporter.celery_io import CeleryIO, CeleryReader
from exporter.config import Config
from exporter.poller import Poller
from exporter.state import State
from tests.support.api import OPERATOR, TRANSIENT, results_source
from tests.support.common import wait_for
from tests.support.workers import celery_app

pytestmark = pytest.mark.e2e


@contextmanager
def events_source(state: State, io: CeleryIO) -> Iterator[Any]:
    """The ledger's real events source (the lean Redis consumer), as the daemon builds it."""
    from exporter.celery_io.events import event_stream
    from exporter.keeper.gate import StartGate
    from exporter.sources.events import EventsSource

    boot = StartGate()
    boot.loaded.set()

    def stream(handler: Any, on_state: Any, batch: Any) -> Any:
        cfg = state.config
        return event_stream(io.app, "ui-test", "auto", handler, on_state, batch, cfg.retry_interval)

    source = EventsSource(state, stream, boot)
    source.start()
    try:
        wait_for(lambda: state.source_health()["events"].up, 20, what="events source up")
        yield source
    finally:
        source.stop()


@contextmanager
def poll_job(state: State, io: CeleryIO, every: float) -> Iterator[None]:
    """The daemon's poll job (a real poll of the broker, then the trends sample), on a timer."""
    poller = Poller(state, CeleryReader(io))
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            snap = poller.poll()
            state.trends.sample(state.clock.time(), state.ledger, snap)
            stop.wait(every)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


class Cluster:
    def __init__(self, redis_server: Any, start_worker: Any, unique: str, **config: Any) -> None:
        url = f"{redis_server.url}/13"
        self.queue = f"ui-{unique}"
        self.env = {
            "TEST_BROKER_URL": url,
            "TEST_BACKEND_URL": url,
            "TEST_DEFAULT_QUEUE": self.queue,
        }
        self.worker = start_worker(self.env, queues=self.queue, concurrency=4)
        self.producer = celery_app(self.env)
        self.config = Config(
            broker_url=url,
            result_backend=url,
            operator_tokens=(OPERATOR,),
            transient_exceptions=TRANSIENT,
            **config,
        )
        self.state = State(self.config)
        self.io = CeleryIO(self.config)
        self.live = ExitStack()
        self.live.enter_context(results_source(self.state))
        self.live.enter_context(events_source(self.state, self.io))

    def app(self) -> FastAPI:
        app = FastAPI()
        app.include_router(build_router(self.state, self.io))
        install_error_handlers(app)
        return app

    def send(self, name: str, *args: Any) -> str:
        return str(self.producer.send_task(name, args=list(args), queue=self.queue).id)

    def close(self) -> None:
        self.live.close()
        self.io.close()
        self.producer.close()


@pytest.fixture
def cluster(redis_server: Any, start_worker: Any, unique: str) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(**config: Any) -> Cluster:
        made.append(Cluster(redis_server, start_worker, unique, **config))
        return made[-1]

    yield make
    for c in made:
        c.close()


def _open(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url)
    page.fill("#token", OPERATOR)
    page.click("#save-token")
    return page, problems


def _finished(state: State, ids: list[str]) -> bool:
    return all((r := state.ledger.get(t)) is not None and r.ready for t in ids)


def test_browse_filter_and_page_through_500_tasks(browser: Any, serve: Any, cluster: Any) -> None:
    from playwright.sync_api import expect

    c = cluster()
    ok = [c.send("tests.add", i, 1) for i in range(450)]
    bad = [c.send("tests.fail_permanent") for _ in range(50)]
    wait_for(lambda: _finished(c.state, ok + bad), 180, what="500 tasks finished")
    base = serve(c.app())
    page, problems = _open(browser, f"{base}/ui#tasks")
    try:
        expect(page.locator("#t-counts")).to_contain_text("500 task(s) match")
        assert "FAILURE 50" in page.inner_text("#t-counts")
        assert "SUCCESS 450" in page.inner_text("#t-counts")
        assert "back to" in page.inner_text("#t-reach")  # how far back the rings reach
        # Page through everything, newest first, with the API's cursor.
        seen: list[str] = []
        for n in range(10):
            expect(page.locator("#t-page")).to_have_text(f"page {n + 1}")
            expect(page.locator("#t-rows tr")).to_have_count(50)
            seen += page.locator("#t-rows td.id").all_inner_texts()
            if n < 9:
                page.click("#t-next")
        assert page.locator("#t-next").is_disabled()
        assert len(seen) == 500 and set(seen) == set(ok + bad)
        times = [round(c.state.ledger.get(t).updated_at, 6) for t in seen]  # type: ignore[union-attr,arg-type]
        assert times == sorted(times, reverse=True)
        page.click("#t-first")
        expect(page.locator("#t-page")).to_have_text("page 1")
        # Filters: state (shown as colour and text), name, queue, worker, time range.
        page.select_option("#f-status", "FAILURE")
        page.click("#f-apply")
        expect(page.locator("#t-counts")).to_contain_text("50 task(s) match")
        expect(page.locator("#t-rows .s-FAILURE")).to_have_count(50)
        assert page.locator("#t-next").is_disabled()
        page.select_option("#f-status", "")
        page.fill("#f-name", "tests.add")
        page.fill("#f-queue", c.queue)
        page.fill("#f-worker", c.worker.name)
        page.click("#f-apply")
        expect(page.locator("#t-counts")).to_contain_text("450 task(s) match")
        page.fill("#f-queue", "no-such-queue")
        page.click("#f-apply")
        expect(page.locator("#t-counts")).to_contain_text("0 task(s) match")
        expect(page.locator("#t-rows")).to_contain_text("no task matches")
        page.click("#f-clear")
        page.fill("#f-since", "2999-01-01T00:00:00")
        page.click("#f-apply")
        expect(page.locator("#t-counts")).to_contain_text("0 task(s) match")
        page.fill("#f-since", "2000-01-01T00:00:00")
        page.click("#f-apply")
        expect(page.locator("#t-counts")).to_contain_text("500 task(s) match")
        # Search by id opens the detail.
        page.fill("#f-id", bad[7])
        page.click("#f-open")
        expect(page.locator("#d-title")).to_contain_text(bad[7])
        expect(page.locator("#d-exc")).to_contain_text("PermanentError")
        assert not problems, problems
    finally:
        page.close()


def test_detail_traceback_retry_chain_and_a_confirmed_plan(
    browser: Any, serve: Any, cluster: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    c = cluster()
    marker = tmp_path / "healed"
    failed = c.send("tests.retry_then_fail", str(marker))
    wait_for(lambda: _finished(c.state, [failed]), 60, what="the retried task failed")
    wait_for(lambda: (d := c.state.details.get(failed)) and d.traceback, 30, what="traceback")
    base = serve(c.app())
    page, problems = _open(browser, f"{base}/ui#tasks")
    try:
        page.click(f"#t-rows a[href='#task/{failed}']")
        expect(page.locator("#d-title")).to_contain_text(failed)
        # (the title can show before the fields are filled: wait for them, then read)
        expect(page.locator("#d-fields")).to_contain_text("FAILURE")
        fields = page.inner_text("#d-fields")
        assert "FAILURE" in fields and c.queue in fields and c.worker.name in fields
        expect(page.locator("#d-fields dt:has-text('Retries') + dd")).to_have_text("2")
        expect(page.locator("#d-tb")).to_contain_text("Traceback (most recent call last)")
        assert "TransientError" in page.inner_text("#d-tb")
        reports = page.inner_text("#d-reports")
        assert "RETRY" in reports and "events" in reports and "pubsub" in reports
        # Propose for this task: nothing runs until the separate, confirmed approval.
        page.click("#d-propose")
        expect(page.locator("#detail-plan .plan-actions li")).to_have_count(1)
        assert "send tests.retry_then_fail again" in page.inner_text("#detail-plan")
        assert page.locator("#confirm").is_hidden()
        marker.write_text("ok")
        page.click("#approve")
        expect(page.locator("#confirm")).to_contain_text("Run 1 action(s) now?")
        page.click("#confirm-cancel")
        assert page.locator("#confirm").is_hidden() and page.locator("#outcomes").count() == 0
        page.click("#approve")
        page.click("#confirm-approve")
        expect(page.locator(".new-task.ok")).to_have_count(1, timeout=60_000)
        child = page.locator(".new-task").get_attribute("data-task-id")
        assert child
        # The chain: the re-sent task is a child of the failure, and links back to it.
        wait_for(lambda: child in c.state.details.get(failed).children, 30, what="child linked")  # type: ignore[union-attr]
        page.goto(f"{base}/ui#task/{failed}")
        page.reload()
        page.click(f"#d-chain a[href='#task/{child}']")
        expect(page.locator("#d-title")).to_contain_text(child)
        expect(page.locator("#d-fields")).to_contain_text("SUCCESS")
        page.click(f"#d-chain a[href='#task/{failed}']")
        expect(page.locator("#d-title")).to_contain_text(failed)
        assert not [p for p in problems if "Failed to load resource" not in p], problems
    finally:
        page.close()


def test_trends_render_with_data_under_load(browser: Any, serve: Any, cluster: Any) -> None:
    from playwright.sync_api import expect

    # One point per second (--trends-step 1) instead of per minute: the same code, a
    # shorter step, so a few seconds of real load draw several points.
    c = cluster(trends_step=1.0, poll_interval=1.0, inspect_timeout=0.5)
    with poll_job(c.state, c.io, 0.5):
        # The first sample is the baseline: load sent before it would not show as a delta.
        wait_for(lambda: c.state.trends.points_since(c.state.clock.time()), 30, what="baseline")
        sent: list[str] = []
        for _ in range(6):
            sent += [c.send("tests.add", i, 2) for i in range(20)]
            sent.append(c.send("tests.fail_permanent"))
            wait_for(
                lambda sent=sent: _finished(c.state, sent), 60, what="a round of load finished"
            )
            n = len(c.state.trends.points_since(c.state.clock.time()))
            wait_for(
                lambda n=n: len(c.state.trends.points_since(c.state.clock.time())) > n,
                10,
                what="a new trend point",
            )
        # Counts may wait out --label-grace for a late name: sampled once they are in.
        wait_for(
            lambda: (
                sum(
                    p.succeeded + p.failed
                    for p in c.state.trends.points_since(c.state.clock.time())
                )
                == 126
            ),
            30,
            what="every finished task in the trends",
        )
        base = serve(c.app())
        page, problems = _open(browser, f"{base}/ui#trends")
        try:
            expect(page.locator("#tr-summary")).to_contain_text("tasks finished")
            summary = page.inner_text("#tr-summary")
            assert "126 tasks finished" in summary and "(6 failed)" in summary, summary
            expect(page.locator("#tr-charts svg")).to_have_count(3)
            for title in ("Success rate: now", "Finished per minute: now", "Queue depth: now"):
                expect(page.locator(f"#tr-charts svg[aria-label^='{title}']")).to_have_count(1)
            # Drawn: a line with several points, and the same numbers as a table.
            assert page.locator("#tr-charts svg >> nth=1 >> circle").count() >= 3
            assert "L" in (page.locator("#tr-charts svg >> nth=1 >> path").get_attribute("d") or "")
            assert page.locator("#tr-rows tr").count() >= 3
            assert not problems, problems
        finally:
            page.close()


HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=1">\ud800 '


def test_hostile_values_in_every_new_field_render_as_text(browser: Any, serve: Any) -> None:
    import json

    import fakeredis

    from exporter.decode.events import parse_event
    from exporter.decode.records import parse_result
    from exporter.snapshot import PollHealth, QueueSnapshot, Snapshot
    from tests.support.api import make_app, make_config, new_state

    config = make_config()
    state = new_state(config)
    big = HOSTILE + "m" * 10_240
    record = {
        "status": "FAILURE",
        "name": HOSTILE,
        "queue": HOSTILE,
        "worker": HOSTILE,
        "parent_id": "p-" + HOSTILE.replace(" ", ""),
        "result": {"exc_type": "Boom", "exc_message": [big]},
        "traceback": big,
        "args": [HOSTILE],
        "kwargs": {},
        "date_done": "2023-11-14T22:13:20",
    }
    raw = json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")
    event = {"type": "task-retried", "uuid": "h1", "hostname": HOSTILE, "exception": big}
    ups = [parse_event(event), parse_result(raw, "h1", "pubsub")]
    state.ledger.apply_many(ups)  # type: ignore[arg-type]
    state.details.note_many(ups)  # type: ignore[arg-type]
    now = state.clock.time()
    snap = Snapshot(
        taken_at=now,
        queues={HOSTILE: QueueSnapshot(HOSTILE, 3, 1, None)},
        health=PollHealth(broker_up=True, last_success=now),
    )
    state.trends.sample(now, state.ledger, snap)
    base = serve(make_app(state, CeleryIO(config), fakeredis.FakeRedis()))
    page, problems = _open(browser, f"{base}/ui#tasks")
    try:
        from playwright.sync_api import expect

        expect(page.locator("#t-rows td.id")).to_have_text(["h1"])
        assert "<script>window.pwned=1</script>" in page.inner_text("#t-rows")
        page.click("#t-rows a")
        expect(page.locator("#d-tb")).to_contain_text("<img src=x onerror=")
        text = page.inner_text("#view-task")
        assert "<script>window.pwned=1</script>" in text and "mmmm" in text
        assert "\ufffd" in text  # the lone surrogate, replaced
        page.click("#nav-trends")
        expect(page.locator("#tr-summary")).to_contain_text("queue depth now 3")
        page.click("#nav-situation")
        expect(page.locator("#failures")).to_contain_text("h1")
        shown = {
            "#tasks": ("#t-rows", "h1"),
            "#task/h1": ("#d-tb", "mmmm"),
            "#trends": ("#tr-summary", "queue depth"),
            "#situation": ("#failures", "h1"),
        }
        for view, (where, what) in shown.items():
            page.goto(f"{base}/ui{view}")
            page.reload()
            expect(page.locator(where)).to_contain_text(what)
            assert page.locator("img").count() == 0
            assert page.locator("body script").count() == 2  # the page's own two, no more
            assert page.evaluate("window.pwned") is None
        assert not problems, problems
    finally:
        page.close()
