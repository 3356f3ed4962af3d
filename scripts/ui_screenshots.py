"""Refresh the README's screenshots of /ui: the situation (the operator page), the task
browser, a task's detail, the trends and the periodic tasks.

    .venv/bin/python scripts/ui_screenshots.py  # writes docs/img/operator-page.png, ui-*.png

Serves the real API and page in-process, fed the way the sources feed it (decoded task
updates into the ledger and the detail ring, trend samples after each "poll") with an hour of
a made-up billing app, and a RedBeat schedule in fakeredis read by the real reader), and
photographs the page in headless Chromium (the test dependency
playwright and a system chromium are needed; the plan store is fakeredis).
"""

from __future__ import annotations

import json
import random
import secrets
import sys
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import fakeredis
import uvicorn
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.api import build_router, install_error_handlers  # noqa: E402
from exporter.beat.cron import parse_expression  # noqa: E402
from exporter.beat.redbeat import RedBeatReader  # noqa: E402
from exporter.beat.source import BeatSource  # noqa: E402
from exporter.celery_io import CeleryIO  # noqa: E402
from exporter.config import Config  # noqa: E402
from exporter.poller import Poller  # noqa: E402
from exporter.snapshot import PollHealth, QueueSnapshot, Snapshot  # noqa: E402
from exporter.state import State  # noqa: E402
from exporter.taskdata import TaskUpdate  # noqa: E402
from tests.support.cluster import FakeReader  # noqa: E402

TOKEN = secrets.token_hex(16)  # this run only
NAMES = ["billing.tasks.send_invoice", "billing.tasks.charge_card", "mail.tasks.send_digest"]
WORKERS = ["celery@billing-1", "celery@billing-2", "celery@mail-1"]
TRACEBACK = """Traceback (most recent call last):
  File "/app/billing/tasks.py", line 41, in charge_card
    receipt = gateway.charge(customer_id, amount, idempotency_key=key)
  File "/app/billing/gateway.py", line 88, in charge
    raise GatewayTimeout(f"payment gateway did not answer in {self.timeout}s")
billing.gateway.GatewayTimeout: payment gateway did not answer in 10s
"""


def _task(state: State, task_id: str, name: str, at: float, outcome: str, **kw: object) -> None:
    worker = WORKERS[NAMES.index(name)]
    ups = [
        TaskUpdate(task_id, "SENT", "events", at - 2.5, name=name, queue="billing", **kw),  # type: ignore[arg-type]
        TaskUpdate(task_id, "RECEIVED", "events", at - 2.0, name=name, worker=worker),
        TaskUpdate(task_id, "STARTED", "events", at - 1.2, worker=worker),
    ]
    if outcome == "FAILURE":
        for n in range(2):
            ups.append(
                TaskUpdate(
                    task_id,
                    "RETRY",
                    "events",
                    at - 0.8 + n * 0.3,
                    exception_type="GatewayTimeout",
                    traceback=TRACEBACK,
                )
            )
            ups.append(TaskUpdate(task_id, "RETRY", "pubsub", at - 0.7 + n * 0.3, retries=n))
        ups.append(
            TaskUpdate(
                task_id,
                "FAILURE",
                "events",
                at,
                runtime=1.2,
                exception_type="GatewayTimeout",
                exception_message="payment gateway did not answer in 10s",
                traceback=TRACEBACK,
            )
        )
    else:
        ups.append(TaskUpdate(task_id, "SUCCESS", "events", at, runtime=1.2))
    ups.append(
        TaskUpdate(
            task_id,
            outcome,
            "pubsub",
            at + 0.01,
            name=name,
            queue="billing",
            worker=worker,
            retries=2 if outcome == "FAILURE" else 0,
            args=["cus_81f2", 4200],
            kwargs={},
            args_complete=True,
        )
    )
    state.ledger.apply_many(ups)
    state.details.note_many(ups)


def seed(state: State) -> str:
    rnd = random.Random(7)
    now = time.time()
    step = state.trends.step
    start = now - 60 * step
    for i in range(61):
        at = start + i * step
        for _ in range(rnd.randint(8, 14) if i < 40 else rnd.randint(18, 26)):
            name = NAMES[rnd.randrange(3)]
            bad = name.endswith("charge_card") and (i > 44 and rnd.random() < 0.35)
            tid = f"{rnd.getrandbits(128):032x}"
            _task(
                state,
                tid,
                name,
                min(now - 1, at + rnd.random() * step),
                "FAILURE" if bad else "SUCCESS",
            )
        depth = 3 + (i - 40) * 9 if i > 40 else rnd.randint(0, 4)
        snap = Snapshot(
            taken_at=at,
            queues={"billing": QueueSnapshot("billing", depth, 2, None)},
            health=PollHealth(broker_up=True, last_success=at),
        )
        state.trends.sample(at + step - 1, state.ledger, snap)
    parent, failed = f"{rnd.getrandbits(128):032x}", f"{rnd.getrandbits(128):032x}"
    _task(state, parent, NAMES[2], now - 30, "SUCCESS")
    _task(state, failed, NAMES[1], now - 20, "FAILURE", parent_id=parent)
    return failed


def seed_cluster(state: State) -> None:
    """The workers and queues a poll sees: a queue nobody consumes, backing up behind a task
    sent four minutes ago, and a charge stuck for 25 minutes on billing-2."""
    now = time.time()
    reader = FakeReader()
    reader.add_worker(WORKERS[0], queues=("billing",), concurrency=4)
    reader.add_worker(WORKERS[1], queues=("billing",), concurrency=4, active=[
        {"id": "5f0c2a9e7d1b4c3aa8e6b1d2c3f4a5b6", "name": NAMES[1], "time_start": now - 1500,
         "delivery_info": {"routing_key": "billing"}}])  # fmt: skip
    reader.add_worker(WORKERS[2], queues=("mail",), concurrency=2)
    head = "9a8b7c6d5e4f40312a1b2c3d4e5f6a7b"
    state.ledger.apply_many([TaskUpdate(head, "SENT", "events", now - 240,
                                        name="billing.tasks.export", queue="reports")])  # fmt: skip
    reader.set_queue("billing", 2, heads=("b1",))
    reader.set_queue("mail", 0)
    reader.set_queue("reports", 37, heads=(head,))
    Poller(state, reader).poll()


def _entry(r: fakeredis.FakeRedis, name: str, task: str, schedule: dict[str, object],
           due: float, last: float, enabled: bool = True) -> None:  # fmt: skip
    """One entry as RedBeat stores it: its definition and meta, scored by its next due time."""
    key = f"redbeat:{name}"
    definition = {"name": name, "task": task, "args": [], "kwargs": {}, "enabled": enabled,
                  "options": {"queue": "billing"}, "schedule": schedule}  # fmt: skip
    r.hset(key, "definition", json.dumps(definition))
    r.hset(key, "meta", json.dumps({"last_run_at": last, "total_run_count": 40}))
    r.zadd("redbeat::schedule", {key: due})


def seed_beat(state: State) -> None:
    """RedBeat with a healthy, a failing, a missed (02:00 Berlin, last night) and a disabled
    entry, beat's lock fresh; the ledger's last runs of their tasks."""
    now = time.time()
    r = fakeredis.FakeRedis()
    every = {"__type__": "interval", "every": 300, "relative": False}
    cron = {"__type__": "crontab", "minute": "*/15", "hour": "*", "day_of_week": "*",
            "day_of_month": "*", "month_of_year": "*"}  # fmt: skip
    nightly = {**cron, "minute": "0", "hour": "2"}
    _entry(r, "reconcile-payments", "billing.tasks.reconcile", every, now + 180, now - 120)
    _entry(r, "weekly-digest", "mail.tasks.weekly_digest", cron, now + 500, now - 400)
    berlin = ZoneInfo("Europe/Berlin")
    due = parse_expression("0 2 * * *", berlin).next_after(now - 86400) or now - 3600
    _entry(r, "nightly-report", "billing.tasks.nightly_report", nightly, due, due - 86400)
    _entry(r, "old-export", "billing.tasks.export", every, now - 9000, now - 9300, False)
    r.set("redbeat::lock", "beat", px=1_500_000)
    ups = [
        TaskUpdate("r1", "STARTED", "events", now - 119, name="billing.tasks.reconcile"),
        TaskUpdate("r1", "SUCCESS", "events", now - 117),
        TaskUpdate("d0", "SUCCESS", "events", now - 1300, name="mail.tasks.weekly_digest"),
        TaskUpdate("d1", "STARTED", "events", now - 399, name="mail.tasks.weekly_digest"),
        TaskUpdate("d1", "FAILURE", "events", now - 398, exception_type="SMTPServerDisconnected"),
        TaskUpdate("n1", "SUCCESS", "events", due - 86340, name="billing.tasks.nightly_report"),
    ]  # fmt: skip
    state.ledger.apply_many(ups)
    BeatSource(state, RedBeatReader(lambda: r, tz=berlin)).run()


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    config = Config(broker_url="memory://", result_backend="", operator_tokens=(TOKEN,),
                    queues=("reports",))  # fmt: skip
    state = State(config)
    failed = seed(state)
    seed_beat(state)
    seed_cluster(state)
    app = FastAPI()
    app.include_router(build_router(state, CeleryIO(config), client=fakeredis.FakeRedis()))
    install_error_handlers(app)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)  # a script waiting for its server, not a test
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}/ui"
    out = ROOT / "docs" / "img"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(base + "#situation")
        page.fill("#token", TOKEN)
        page.click("#save-token")
        expect(page.locator("body")).to_contain_text("reports")
        page.select_option("#mode", "greedy")
        page.click("#propose")
        page.locator("#approve").wait_for()
        # The plan's first steps (36 in all: the page's top is the picture, not the list).
        page.screenshot(path=str(out / "operator-page.png"), full_page=True,
                        clip={"x": 0, "y": 0, "width": 1200, "height": 2000})  # fmt: skip
        page.goto(base + "#tasks")
        expect(page.locator("#t-rows tr")).to_have_count(50)
        page.screenshot(path=str(out / "ui-tasks.png"))
        page.goto(f"{base}#task/{failed}")
        expect(page.locator("#d-tb")).to_contain_text("GatewayTimeout")
        page.click("#d-propose")
        page.locator("#approve").wait_for()
        page.click("#approve")
        page.screenshot(path=str(out / "ui-task-detail.png"), full_page=True)
        page.goto(base + "#trends")
        expect(page.locator("#tr-charts svg")).to_have_count(3)
        page.screenshot(path=str(out / "ui-trends.png"))
        page.goto(base + "#periodic")
        expect(page.locator("#p-rows tr")).to_have_count(4)
        page.click("#p-rows button.run-now")
        page.locator("#approve").wait_for()
        page.screenshot(path=str(out / "ui-periodic.png"), full_page=True)
        browser.close()
    server.should_exit = True
    thread.join(10)
    names = ("tasks", "task-detail", "trends", "periodic")
    print("wrote docs/img/operator-page.png,", ", ".join(f"docs/img/ui-{n}.png" for n in names))


if __name__ == "__main__":
    main()
