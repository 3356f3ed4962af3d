"""One rule for "stuck": the metric, the sitrep and the planner agree on which tasks are stuck,
whether the task is known from events (ledger) only, from inspect only, or from both."""

from __future__ import annotations

from prometheus_client import generate_latest

from exporter.collectors import build_registry
from exporter.snapshot import RunningTask, Snapshot
from exporter.stuck import running_tasks, stuck_tasks
from exporter.taskdata import RECEIVED, SOURCE_EVENTS, STARTED, TaskUpdate
from tests.support.api import HEAD_V, T0, PlanEnv, busy_snapshot


def _started_by_events(env: PlanEnv, task_id: str, name: str, ago: float) -> None:
    at = env.clock.time() - ago
    env.state.ledger.apply_many(
        [
            TaskUpdate(task_id, RECEIVED, SOURCE_EVENTS, timestamp=at, name=name, worker="w9@h"),
            TaskUpdate(task_id, STARTED, SOURCE_EVENTS, timestamp=at, worker="w9@h"),
        ]
    )


def _stuck_everywhere(env: PlanEnv) -> tuple[set[str], set[str], set[str]]:
    text = generate_latest(build_registry(env.state)).decode()
    metric = {
        line.split('name="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("celery_tasks_stuck{")
    }
    sitrep = env.client.get("/api/sitrep", headers=HEAD_V).json()
    listed = {s["id"] for s in sitrep["stuck"]}
    plan = env.propose(mode="greedy")
    revoked = {a["target"] for a in plan["actions"] if a["action"] == "revoke"}
    return metric, listed, revoked


def test_a_task_started_by_events_only_is_stuck_in_metric_sitrep_and_planner() -> None:
    env = PlanEnv()
    env.state.set_snapshot(Snapshot(taken_at=T0))  # inspect knows nothing
    _started_by_events(env, "ev-700", "tests.slow", 700.0)  # --stuck-after is 600
    _started_by_events(env, "ev-100", "tests.quick", 100.0)
    metric, listed, revoked = _stuck_everywhere(env)
    assert metric == {"tests.slow"}
    assert listed == {"ev-700"}
    assert revoked == {"ev-700"}


def test_inspect_and_ledger_merge_by_task_id() -> None:
    env = PlanEnv()
    env.state.set_snapshot(busy_snapshot(T0, stuck_id="both", age=1200.0))
    _started_by_events(env, "both", "tests.sleep", 1200.0)
    _started_by_events(env, "ev-only", "tests.slow", 900.0)
    tasks = {t.task_id: t for t in running_tasks(env.state.ledger, env.state.snapshot)}
    assert set(tasks) == {"both", "ev-only"}
    assert tasks["both"].worker == "w1@host" and tasks["both"].queue == "celery"
    metric, listed, revoked = _stuck_everywhere(env)
    assert metric == {"tests.sleep", "tests.slow"}
    assert listed == revoked == {"both", "ev-only"}


def test_a_down_workers_stale_inspect_answer_is_not_running() -> None:
    env = PlanEnv()
    snap = busy_snapshot(T0)
    worker = snap.workers["w1@host"]
    from dataclasses import replace

    env.state.set_snapshot(replace(snap, workers={"w1@host": replace(worker, up=False)}))
    assert running_tasks(env.state.ledger, env.state.snapshot) == []
    metric, listed, revoked = _stuck_everywhere(env)
    assert metric == listed == revoked == set()


def test_stuck_is_strictly_past_the_limit_and_ordered_longest_first() -> None:
    env = PlanEnv()
    now = env.clock.time()
    running = tuple(
        RunningTask(f"t{age}", "n", "w1@host", "celery", now - age) for age in (600.0, 601.0, 900.0)
    )
    snap = busy_snapshot(now)
    worker = snap.workers["w1@host"]
    from dataclasses import replace

    env.state.set_snapshot(replace(snap, workers={"w1@host": replace(worker, running=running)}))
    got = stuck_tasks(env.state.ledger, env.state.snapshot, now, 600.0)
    assert [t.task_id for t in got] == ["t900.0", "t601.0"]
