"""Per-name and per-queue counts equal the truth, with real workers, for each Celery setup.

One private Redis for the module; each case starts its own worker (the setup is the
worker's and producer's Celery configuration), sends a small known mix of successes,
failures and retries over two queues, and compares the exporter's labelled counters with
what it sent. Where a source can name the task (task-received, an extended result) or its
queue (task-sent, an extended result), the label must be the real one; where none can, the
test says what it expects instead (the default queue, or `unknown` plus the
unattributed counter).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from tests.support.common import wait_for
from tests.support.ledger import ExporterProc
from tests.support.redisserver import RedisServer
from tests.support.workers import Worker, celery_app

pytestmark = pytest.mark.integration
COUNTERS = ("succeeded", "failed", "retried")
TASKS = 30
GRACE = "3"


@dataclass(frozen=True)
class Setup:
    id: str
    sent_event: bool = False  # producers: task_send_sent_event
    extended: bool = False  # workers: result_extended
    events: bool = True  # workers: worker_send_task_events (-E)
    pool: str = "prefork"
    restart: bool = False  # stop the exporter mid-grace and start it again
    # What the labels must be: real names / real queues, or what stands in for them.
    names_known: bool = True
    queues_known: bool = False
    exporter_args: tuple[str, ...] = field(default=())


SETUPS = [
    # Plain Celery: names from task-received, queues from nowhere (the default queue name).
    Setup("default", exporter_args=("--default-queue-name", "fallback")),
    Setup("sent_event", sent_event=True, queues_known=True),
    Setup("result_extended", extended=True, queues_known=True),
    Setup("threads", pool="threads", extended=True, queues_known=True),
    # Events off: the extended result is the only source of names and queues...
    Setup("events_off_extended", events=False, extended=True, queues_known=True),
    # ...and without it nothing names a finished task: unknown, and counted as such.
    Setup("events_off_plain", events=False, names_known=False),
    Setup("restart", restart=True),
]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer()
    s.start()
    yield s
    s.cleanup()


def send(app: Any, queues: tuple[str, str], ids: dict[str, tuple[str, str]]) -> Counter[Any]:
    """TASKS tasks over two queues; the truth per (name, queue, counter); ids -> labels."""
    truth: Counter[tuple[str, str, str]] = Counter()
    with app.producer_or_acquire() as producer:
        for i in range(TASKS):
            queue = queues[i % 2]
            if i % 5 == 1:
                name, args = "tests.fail_permanent", ()
                truth[(name, queue, "failed")] += 1
            elif i % 5 == 2:
                name, args = "tests.retry_once", (i,)
                truth[(name, queue, "retried")] += 1
                truth[(name, queue, "succeeded")] += 1
            else:
                name, args = "tests.add", (i, 1)
                truth[(name, queue, "succeeded")] += 1
            ids[app.send_task(name, args, queue=queue, producer=producer).id] = (name, queue)
    return truth


class Truth:
    """What the test sent, per (name, queue, counter), as the backend announced it.

    The backend's stored state is not the truth for a retried task: Celery sends the retry's
    message before the old run stores RETRY, and its guard that a stored SUCCESS is never
    overwritten is a read then a write. So the new run's SUCCESS can be stored first and
    then overwritten by RETRY (the task succeeded; the record says RETRY forever), or the
    guard sees SUCCESS and RETRY is never stored nor published (without events nothing
    tells of that retry, unless an extended result numbers the attempt that succeeded). All
    seen in CI. What the backend published, heard on a subscription made before any task is
    sent, says which happened."""

    def __init__(self, results: redis.Redis) -> None:
        self.sent: Counter[Any] = Counter()
        self.ids: dict[str, tuple[str, str]] = {}  # task id -> (name, queue)
        self.published: dict[str, set[str]] = {}  # task id -> every status announced
        self._listener = results.pubsub()
        self._listener.psubscribe(**{"celery-task-meta-*": self._heard})
        self._listener.get_message(timeout=5)  # the subscription is confirmed: none missed
        self._thread = self._listener.run_in_thread(sleep_time=0.05, daemon=True)

    def _heard(self, message: dict[str, Any]) -> None:
        task_id = message["channel"].decode()[len("celery-task-meta-") :]
        record = json.loads(message["data"])
        heard = self.published.setdefault(task_id, set())
        heard.add(record.get("status", ""))
        if (record.get("retries") or 0) >= 1:  # an extended result numbers its attempt
            heard.add("RETRY")

    def close(self) -> None:
        self._thread.stop()
        self._thread.join(5)
        self._listener.close()

    def finished(self, task_id: str) -> bool:
        return bool(self.published.get(task_id, set()) & {"SUCCESS", "FAILURE"})

    def now(self, events: bool) -> Counter[Any]:
        out = Counter(self.sent)
        for task_id, (name, queue) in self.ids.items():
            heard = self.published.get(task_id, set())
            if name == "tests.retry_once" and "SUCCESS" not in heard:
                out[(name, queue, "succeeded")] -= 1  # its retry still waits to run
            if name == "tests.retry_once" and not events and "RETRY" not in heard:
                out[(name, queue, "retried")] -= 1  # announced by nothing
        return +out


def all_done(ids: dict[str, tuple[str, str]], truth: Truth) -> None:
    """Wait until the backend announced every task final. A retried task whose retry has
    not run after that (Celery can hold one for minutes on a loaded machine) counts as not
    succeeded until it is announced (Truth.now); anything else fails."""
    truth.ids.update(ids)
    try:
        wait_for(lambda: all(truth.finished(t) for t in ids), 90, 0.5, "every task done")
    except AssertionError:
        late = [t for t in ids if not truth.finished(t)]
        if any(ids[t][0] != "tests.retry_once" for t in late):
            raise
        print(f"{len(late)} retried task(s) not finished: their successes count once announced")


def labelled(exporter: ExporterProc) -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for (sample, labels), value in exporter.samples().items():
        for c in COUNTERS:
            if sample == f"celery_task_{c}_total" and value:
                d = dict(labels)
                out[(d["name"], d["queue_name"], c)] += int(value)
    return out


def matches(setup: Setup, got: Counter[tuple[str, str, str]], truth: Counter[Any]) -> bool:
    """Totals are exact; a real name or queue label never holds more than its truth; and
    with a source of names every count is under its real name (exact per name). Inspect
    can name a task it saw running even where no other source could: that is allowed."""
    default = want_queue(setup)
    totals: Counter[str] = Counter()
    by_name: Counter[tuple[str, str]] = Counter()
    for (n, q, c), v in got.items():
        totals[c] += v
        if n == "unknown":
            if setup.names_known or q != default:
                return False
            continue
        by_name[(n, c)] += v
        if not (q == default and not setup.queues_known) and v > truth[(n, q, c)]:
            return False
    want_totals: Counter[str] = Counter()
    want_by_name: Counter[tuple[str, str]] = Counter()
    for (n, _q, c), v in truth.items():
        want_totals[c] += v
        want_by_name[(n, c)] += v
    if totals != want_totals:
        return False
    if setup.names_known:
        return by_name == want_by_name
    return all(v <= want_by_name[k] for k, v in by_name.items())


def want_queue(setup: Setup) -> str:
    return "fallback" if "--default-queue-name" in setup.exporter_args else "unknown"


def wait_listening(exporter: ExporterProc, setup: Setup) -> None:
    """Both pub/sub sources subscribed: a message published before that is lost for good
    (pub/sub keeps nothing), and with reconcile off nothing finds it again. Sending before
    this made a CI run count a retry short (its RETRY result was published too early)."""
    for source in ("events", "pubsub") if setup.events else ("pubsub",):
        up = ("celery_exporter_source_up", (("source", source),))
        wait_for(lambda up=up: exporter.samples().get(up) == 1.0, 30, what=f"{source} up")


@pytest.mark.parametrize("setup", SETUPS, ids=lambda s: s.id)
def test_counts_are_labelled_with_the_truth(server: RedisServer, setup: Setup) -> None:
    env = {
        "TEST_BROKER_URL": f"{server.url}/0",
        "TEST_BACKEND_URL": f"{server.url}/1",
        "TEST_SENT_EVENT": "1" if setup.sent_event else "0",
        "TEST_RESULT_EXTENDED": "1" if setup.extended else "0",
        "TEST_EVENTS": "1" if setup.events else "0",
        "TEST_TRACK_STARTED": "0",  # Celery's default
    }
    queues = (f"{setup.id}-a", f"{setup.id}-b")
    results = redis.Redis(port=server.port, db=1)
    results.flushdb()
    truth = Truth(results)
    app = celery_app(env)
    worker = Worker(env, queues=",".join(queues), pool=setup.pool, concurrency=4)
    args = ["--broker-url", env["TEST_BROKER_URL"], "--result-backend", env["TEST_BACKEND_URL"]]
    args += ["--label-grace", GRACE, "--reconcile-interval", "0", *setup.exporter_args]
    if not setup.events:
        args += ["--events", "false"]
    exporter = ExporterProc(args, f"attr-{setup.id}")
    try:
        exporter.start()
        worker.wait_ready()
        wait_listening(exporter, setup)
        ids: dict[str, tuple[str, str]] = {}
        truth.sent = send(app, queues, ids)
        all_done(ids, truth)
        first = dict(ids)
        if setup.restart:
            # Stop while counts wait for their grace (no queue is ever named here, so every
            # task waits): the final save holds them, and the restart applies them once.
            retries = sum(v for (_n, _q, c), v in truth.now(True).items() if c == "retried")
            wait_for(  # one task-received per delivery: each task, and each retry it made
                lambda: events(exporter, "task-received") >= TASKS + retries,
                60,
                interval=0.2,
                what="the names heard",
            )
            exporter.stop()
            exporter.start()
            wait_listening(exporter, setup)
            later: dict[str, tuple[str, str]] = {}
            truth.sent += send(app, queues, later)
            all_done(later, truth)
            ids = {**first, **later}
        total = len(ids)
        try:
            now = truth.now
            right = lambda: matches(setup, labelled(exporter), now(setup.events))  # noqa: E731
            wait_for(right, 30, 0.5, "labels")
        except AssertionError:
            got, want = sorted(labelled(exporter).items()), sorted(now(setup.events).items())
            raise AssertionError(f"got {got}\ntruth {want}") from None
        samples = exporter.samples()
        unattributed = samples[("celery_exporter_tasks_unattributed_total", ())]
        if setup.names_known:
            assert unattributed == 0
        else:  # each task at most once; at least every final count under unknown
            got = labelled(exporter)
            finals = sum(v for (n, _q, c), v in got.items() if n == "unknown" and c != "retried")
            assert finals <= unattributed <= total
        assert samples[("celery_exporter_label_pending_tasks", ())] == 0
        assert samples[("celery_exporter_label_pending_overflow_total", ())] == 0
        # A task that only fails has its succeeded series, at 0.
        labels = (("name", want_name(setup, "tests.fail_permanent")),)
        zero = [
            v
            for (s, ls), v in samples.items()
            if s == "celery_task_succeeded_total" and ls[:1] == labels
        ]
        assert (zero and all(v == 0 for v in zero)) or not setup.names_known
    finally:
        exporter.cleanup()
        worker.stop()
        app.close()
        truth.close()
        results.close()


def want_name(setup: Setup, name: str) -> str:
    return name if setup.names_known else "unknown"


def events(exporter: ExporterProc, kind: str) -> float:
    key = ("celery_exporter_events_received_total", (("type", kind),))
    return exporter.samples().get(key, 0.0)
