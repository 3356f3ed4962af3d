"""Helpers shared by the API tests: a state with a fake clock, an app with the API mounted, task
updates to seed a ledger, the ledger's real pub/sub source for tests with workers, and
`PlanEnv`, a whole fix-it setup on fakeredis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fakeredis
import redis
from celery import Celery
from fastapi import FastAPI
from fastapi.testclient import TestClient

from exporter.api import build_router, install_error_handlers
from exporter.apicounters import ApiCounters
from exporter.celery_io import CeleryIO
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.remediation.service import Remediation
from exporter.remediation.store import PlanStore
from exporter.snapshot import PollHealth, QueueSnapshot, RunningTask, Snapshot, WorkerSnapshot
from exporter.state import State
from exporter.taskdata import SOURCE_RECONCILE, TaskUpdate

VIEWER = "viewer-token-123"
OPERATOR = "operator-token-456"
HEAD_V = {"Authorization": f"Bearer {VIEWER}"}
HEAD_O = {"Authorization": f"Bearer {OPERATOR}"}
T0 = 1_700_000_000.0
TRANSIENT = (*Config().transient_exceptions, "TransientError")


def make_config(**changes: Any) -> Config:
    base = dict(
        broker_url="memory://",
        result_backend="redis://127.0.0.1:1/0",
        viewer_tokens=(VIEWER,),
        operator_tokens=(OPERATOR,),
        transient_exceptions=TRANSIENT,
        stuck_after=600.0,
        plan_ttl=900.0,
    )
    base.update(changes)
    return Config(**base)  # type: ignore[arg-type]


def make_app(state: State, io: CeleryIO, client: redis.Redis) -> FastAPI:
    app = FastAPI()
    store = PlanStore(client, state.config.global_keyprefix, state.config.audit_max_entries)
    app.include_router(build_router(state, io, client=client, store=store))
    install_error_handlers(app)
    return app


def failure(
    task_id: str,
    name: str = "tests.fail_transient",
    exc: str = "TransientError",
    at: float = T0,
    args: Any = None,
    complete: bool = True,
    queue: str = "celery",
) -> TaskUpdate:
    return TaskUpdate(
        task_id=task_id,
        state="FAILURE",
        source=SOURCE_RECONCILE,
        timestamp=at,
        name=name,
        queue=queue,
        worker="w1@host",
        exception_type=exc,
        exception_message="connection reset by peer",
        runtime=0.01,
        args=args if args is not None else ["/tmp/marker"],
        kwargs={},
        args_complete=complete,
    )


def success(task_id: str, name: str = "tests.add", at: float = T0) -> TaskUpdate:
    return TaskUpdate(
        task_id=task_id,
        state="SUCCESS",
        source=SOURCE_RECONCILE,
        timestamp=at,
        name=name,
        queue="celery",
        worker="w1@host",
        runtime=0.5,
        args=[1, 2],
        kwargs={},
        args_complete=True,
    )


def busy_snapshot(now: float, stuck_id: str = "stuck-1", age: float = 1200.0) -> Snapshot:
    running = (RunningTask(stuck_id, "tests.sleep", "w1@host", "celery", now - age),)
    return Snapshot(
        taken_at=now,
        workers={
            "w1@host": WorkerSnapshot(
                "w1@host",
                True,
                now,
                active=1,
                reserved=0,
                pool_max_concurrency=2,
                queues=("celery",),
                running=running,
            )
        },
        queues={
            "celery": QueueSnapshot("celery", 3, 1, 12.0),
            "default": QueueSnapshot("default", 4210, 0, 720.0),
        },
        health=PollHealth(broker_up=True, last_success=now),
    )


def new_state(config: Config) -> State:
    return State(config, clock=FakeClock(T0))


@contextmanager
def results_source(state: State) -> Iterator[Any]:
    """The ledger's real result-backend pub/sub source, feeding `state.ledger` while open."""
    from exporter.backend_redis import backend_client
    from exporter.keeper.gate import StartGate
    from exporter.sources.results import ResultsSource
    from tests.support.common import wait_for

    boot = StartGate()
    boot.loaded.set()  # nothing saved to restore in a test
    source = ResultsSource(state, lambda: backend_client(state.config, pubsub=True), boot)
    source.start()
    try:
        wait_for(source.connected.is_set, 15, what="pub/sub subscribed")
        yield source
    finally:
        source.stop()


class PlanEnv:
    """A fix-it setup on fakeredis: a state with a fake clock, the API, and a real Celery app
    on the in-memory transport receiving the retries."""

    def __init__(self, **config: Any) -> None:
        self.config = make_config(**config)
        self.state: State = new_state(self.config)
        self.redis = fakeredis.FakeRedis()
        self.app = Celery("unit", broker="memory://", set_as_current=False)
        self.io = CeleryIO(self.config, app=self.app)
        self.client = TestClient(make_app(self.state, self.io, self.redis))
        self.waiting()  # kombu's memory transport is process-wide: start from an empty queue

    @property
    def clock(self) -> FakeClock:
        assert isinstance(self.state.clock, FakeClock)
        return self.state.clock

    def propose(self, **body: Any) -> dict[str, Any]:
        resp = self.client.post("/api/fix-it", json=body, headers=HEAD_O)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def decide(self, plan: dict[str, Any], decision: str = "approve", digest: str | None = None):  # type: ignore[no-untyped-def]
        body = {"plan_id": plan["id"], "digest": digest or plan["digest"], "decision": decision}
        return self.client.post("/api/approve", json=body, headers=HEAD_O)

    def remediation(self) -> Remediation:
        """The service behind /api/approve, called directly: a crash test's BaseException
        escaping the TestClient's per-request portal stops its event loop, and the request
        then raised either that exception or "This portal is not running", by thread timing."""
        store = PlanStore(self.redis)
        return Remediation(self.state, self.io, self.redis, store, self.state.attached(ApiCounters))

    def waiting(self, queue: str = "celery") -> list[dict[str, Any]]:
        """Messages sitting in the in-memory broker queue (drained)."""
        out = []
        with self.app.connection_for_read() as conn:
            q = conn.SimpleQueue(queue)
            while True:
                try:
                    msg = q.get(block=False)
                except q.Empty:
                    break
                out.append({"headers": msg.headers, "body": msg.decode()})
                msg.ack()
            q.close()
        return out
