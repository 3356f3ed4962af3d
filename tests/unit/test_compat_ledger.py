"""`--compat danihodovic` outcomes are the ledger's: each task's success, failure, retries,
revoke and reject count once under its name, host and queue, whichever source told (task
events, result pub/sub, a reconcile) and in every order; runtimes are observed once per
succeeded task. Ground truth per name, per host and per queue, every source order."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.clock import FakeClock
from exporter.collectors import build_registry
from exporter.config import Config
from exporter.decode.records import parse_result
from exporter.keeper.gate import StartGate
from exporter.sources.events import EventsSource
from exporter.state import State
from exporter.taskdata import SOURCE_PUBSUB, SOURCE_RECONCILE, TaskUpdate
from tests.support.compat_scenario import NoStream

T0 = 1_700_000_000.0
# (task id, name, node, final state, retries, exception)
TASKS = [
    ("a1", "app.ok", "w1@node1", "SUCCESS", 0, None),
    ("a2", "app.ok", "w2@node2", "SUCCESS", 1, None),
    ("b1", "app.bad", "w1@node1", "FAILURE", 0, "ValueError"),
    ("b2", "app.bad", "w3@node1", "FAILURE", 2, "KeyError"),  # a second node on node1
    ("c1", "app.gone", "w2@node2", "REVOKED", 0, None),
]


def events_of(task_id: str, name: str, node: str, state: str, retries: int,
              exc: str | None) -> list[dict[str, Any]]:  # fmt: skip
    at = T0
    out: list[dict[str, Any]] = []
    for attempt in range(retries + 1):
        out += [
            {
                "type": "task-received",
                "uuid": task_id,
                "hostname": node,
                "name": name,
                "timestamp": at,
                "retries": attempt,
            },
            {"type": "task-started", "uuid": task_id, "hostname": node, "timestamp": at + 1},
        ]
        if attempt < retries:
            out.append(
                {
                    "type": "task-retried",
                    "uuid": task_id,
                    "hostname": node,
                    "timestamp": at + 2,
                    "exception": "Retry('again')",
                }
            )
        at += 10
    end = {
        "type": "task-"
        + {"SUCCESS": "succeeded", "FAILURE": "failed", "REVOKED": "revoked"}[state],
        "uuid": task_id,
        "hostname": node,
        "timestamp": at - 8,
    }
    if state == "SUCCESS":
        end["runtime"] = 1.0
    if exc:
        end["exception"] = f"{exc}('x')"
    return [*out, end]  # fmt: skip


def result_of(task_id: str, name: str, node: str, state: str, retries: int,
              exc: str | None, source: str) -> TaskUpdate:  # fmt: skip
    """What the backend holds with result_extended, through the real decoder."""
    meta: dict[str, Any] = {"status": state, "task_id": task_id, "name": name,
                            "worker": node, "queue": "jobs", "retries": retries,
                            "date_done": "2023-11-14T22:13:40+00:00", "traceback": None,
                            "result": None, "args": [], "kwargs": {}}  # fmt: skip
    if exc:
        meta["result"] = {"exc_type": exc, "exc_message": ["x"], "exc_module": "builtins"}
    update = parse_result(json.dumps(meta).encode(), task_id, source)
    assert isinstance(update, TaskUpdate)
    return update


def compat_values(state: State) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    assert isinstance(state.clock, FakeClock)
    state.clock.advance(state.config.label_grace)  # every held effect applies
    text = generate_latest(build_registry(state)).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if f.name.startswith("celery_task_")
            and s.name.endswith(("_total", "_count"))}  # fmt: skip


def truth() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The outcome series every order must give (queue: the results' "jobs")."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

    def add(metric: str, n: float, **labels: str) -> None:
        key = (metric, frozenset(labels.items()))
        out[key] = out.get(key, 0) + n

    for _tid, name, node, state, retries, exc in TASKS:
        labels = {"name": name, "hostname": node.split("@")[1], "queue_name": "jobs"}
        add("celery_task_succeeded_total", state == "SUCCESS", **labels)
        add("celery_task_revoked_total", state == "REVOKED", **labels)
        add("celery_task_rejected_total", 0, **labels)
        add("celery_task_retried_total", retries, **labels)
        add("celery_task_failed_total", 0, exception="", **labels)
        if exc:
            add("celery_task_failed_total", 1, exception=exc, **labels)
        add("celery_task_runtime_count", state == "SUCCESS", **labels)
    return {k: v for k, v in out.items() if v or "runtime" not in k[0]}


OUTCOMES = ("succeeded", "failed", "revoked", "rejected", "retried", "runtime")


def outcomes(values: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[Any, float]:
    """The outcome series with a value, and the zeros of the results' queue. (Deliveries
    carry what events name, here the default queue "celery": their labels exist at 0 in
    every outcome counter too, checked to be 0.)"""
    out = {}
    for k, v in values.items():
        outcome = any(k[0].startswith(f"celery_task_{o}") for o in OUTCOMES)
        if outcome and (v or ("queue_name", "jobs") in k[1]):
            out[k] = v
    return out


def fresh() -> tuple[State, EventsSource]:
    state = State(Config(compat="danihodovic"), FakeClock(T0 + 100))
    return state, EventsSource(state, NoStream, StartGate())


@pytest.mark.parametrize("order", list(itertools.permutations(("events", "pubsub", "reconcile"))))
def test_outcomes_count_once_per_task_in_every_source_order(order: tuple[str, ...]) -> None:
    state, src = fresh()
    for source in order:
        if source == "events":
            src.handle_many([e for task in TASKS for e in events_of(*task)])
        else:
            kind = SOURCE_PUBSUB if source == "pubsub" else SOURCE_RECONCILE
            state.ledger.apply_many([result_of(*task, kind) for task in TASKS])
    assert outcomes(compat_values(state)) == truth()


@pytest.mark.parametrize("source", [SOURCE_PUBSUB, SOURCE_RECONCILE])
def test_outcomes_without_events_come_from_the_results(source: str) -> None:
    """No events at all (the reference would show nothing): the backend's results count,
    retries from their attempt numbers; runtimes need a start, which results lack."""
    state, _src = fresh()
    state.ledger.apply_many([result_of(*task, source) for task in TASKS])
    values = outcomes(compat_values(state))
    expected = {k: v for k, v in truth().items() if "runtime" not in k[0]}
    assert values == expected


def test_the_fail_ratio_by_name_is_the_ledgers() -> None:
    """failed / (failed + succeeded) by name: app.bad only fails, app.ok never does."""
    state, src = fresh()
    src.handle_many([e for task in TASKS for e in events_of(*task)])
    values = compat_values(state)
    by_name: dict[str, list[float]] = {}
    for (metric, labels), v in values.items():
        name = dict(labels)["name"]
        if metric in ("celery_task_failed_total", "celery_task_succeeded_total"):
            pair = by_name.setdefault(name, [0.0, 0.0])
            pair[metric == "celery_task_succeeded_total"] += v
    assert by_name["app.bad"] == [2.0, 0.0] and by_name["app.ok"] == [0.0, 2.0]


def revoked_without_request(task_id: str) -> TaskUpdate:
    """What Celery's revoke command writes to the backend at once: no request, so no name,
    queue or worker (celery/worker/control.py `_revoke`)."""
    meta = {"status": "REVOKED", "task_id": task_id, "date_done": "2023-11-14T22:13:40+00:00",
            "traceback": None, "children": [],
            "result": {"exc_type": "TaskRevokedError", "exc_message": ["revoked"],
                       "exc_module": "celery.exceptions"}}  # fmt: skip
    update = parse_result(json.dumps(meta).encode(), task_id, SOURCE_PUBSUB)
    assert isinstance(update, TaskUpdate)
    return update


@pytest.mark.parametrize("result_first", [True, False])
def test_a_revoke_the_backend_heard_first_counts_under_its_worker(result_first: bool) -> None:
    """An ETA task revoked by id: the backend's REVOKED (no worker) may reach the ledger
    before or after the task-sent event that names the task; the worker comes with
    task-received. The revoke counts under that worker's host, as celery-exporter's
    task-revoked does, not under hostname="unknown"."""
    state, src = fresh()
    sent = {"type": "task-sent", "uuid": "r1", "hostname": "gen7@producer", "name": "app.eta",
            "queue": "jobs", "timestamp": T0}  # fmt: skip
    received = {"type": "task-received", "uuid": "r1", "hostname": "w1@node1",
                "name": "app.eta", "timestamp": T0 + 0.01}  # fmt: skip
    if result_first:
        state.ledger.apply_many([revoked_without_request("r1")])
        src.handle_many([sent, received])
    else:
        src.handle_many([sent])
        state.ledger.apply_many([revoked_without_request("r1")])
        src.handle_many([received])
    src.handle_many([{"type": "task-revoked", "uuid": "r1", "hostname": "w1@node1",
                      "timestamp": T0 + 5, "expired": False}])  # fmt: skip
    revoked = {dict(labels)["hostname"]: v for (metric, labels), v in compat_values(state).items()
               if metric == "celery_task_revoked_total" and v}  # fmt: skip
    assert revoked == {"node1": 1.0}


def test_a_revoke_no_worker_ever_names_counts_after_the_grace() -> None:
    state, src = fresh()
    src.handle_many([{"type": "task-sent", "uuid": "r2", "hostname": "gen7@producer",
                      "name": "app.eta", "queue": "jobs", "timestamp": T0}])  # fmt: skip
    state.ledger.apply_many([revoked_without_request("r2")])
    revoked = {dict(labels)["hostname"]: v for (metric, labels), v in compat_values(state).items()
               if metric == "celery_task_revoked_total" and v}  # fmt: skip
    assert revoked == {"unknown": 1.0}
