"""Fix-it plans without a cluster: what each mode proposes, what is not retryable and why, and
the approval rules (digest, expiry by the fake clock, once only, denial), with a real Celery app
on the in-memory transport receiving the retries."""

from __future__ import annotations

from dataclasses import replace

import fakeredis
import pytest
from fastapi.testclient import TestClient

from exporter.apicounters import ApiCounters
from exporter.celery_io import CeleryIO
from exporter.decode.plans import read_plan
from exporter.remediation.plan import Plan
from tests.support.api import (
    HEAD_O,
    HEAD_V,
    T0,
    PlanEnv,
    busy_snapshot,
    failure,
    make_app,
    new_state,
)


def _ledger_with_mixed_failures(env: PlanEnv) -> None:
    env.state.ledger.apply_many(
        [
            failure("t1", exc="TransientError", args=["m1"]),
            failure("u1", exc="SomethingOdd", args=["m2"]),
            failure("p1", name="tests.fail_permanent", exc="ValueError", args=[]),
            failure("e1", exc="TimeoutError", complete=False, args=["trunc…"]),
        ]
    )


@pytest.mark.parametrize(
    ("mode", "retried", "revoked"),
    [
        ("conservative", {"t1"}, set()),
        ("balanced", {"t1", "u1"}, set()),
        ("greedy", {"t1", "u1"}, {"stuck-1"}),
    ],
)
def test_modes_choose_actions(mode: str, retried: set[str], revoked: set[str]) -> None:
    env = PlanEnv()
    _ledger_with_mixed_failures(env)
    env.state.set_snapshot(busy_snapshot(T0))
    plan = env.propose(mode=mode)
    acts = plan["actions"]
    assert {a["target"] for a in acts if a["action"] == "retry"} == retried
    assert {a["target"] for a in acts if a["action"] == "revoke"} == revoked
    assert all(a["description"] and a["reason"] for a in acts)
    skipped = {s["task_id"]: s for s in plan["not_actionable"]}
    # e1 is transient but only truncated event reprs are known: not retryable, and says why.
    assert "result_extended=True" in skipped["e1"]["fix"]
    assert "permanent" in skipped["p1"]["reason"]
    assert plan["status"] == "pending" and plan["proposed_by"].startswith("operator#")
    assert all(a["args"] is None for a in acts)  # not shown without --show-task-args


def test_explicit_targets_and_purge_only_on_request() -> None:
    env = PlanEnv()
    _ledger_with_mixed_failures(env)
    env.state.set_snapshot(busy_snapshot(T0, age=5))  # running, not stuck
    plan = env.propose(mode="greedy", task_ids=["p1", "stuck-1", "ghost"], purge_queue="default")
    kinds = [(a["action"], a["target"]) for a in plan["actions"]]
    assert kinds == [("retry", "p1"), ("revoke", "stuck-1"), ("purge", "default")]
    assert "ghost" in {s["task_id"] for s in plan["not_actionable"]}
    assert not any(a["action"] == "purge" for a in env.propose(mode="greedy")["actions"])
    by_name = env.propose(task_name="tests.fail_transient")
    assert {a["target"] for a in by_name["actions"]} == {"t1", "u1"}


def test_approve_runs_retries_once_and_links_them() -> None:
    env = PlanEnv()
    _ledger_with_mixed_failures(env)
    plan = env.propose(mode="balanced")
    resp = env.decide(plan)
    assert resp.status_code == 200, resp.text
    done = resp.json()
    assert done["status"] == "executed" and done["decided_by"].startswith("operator#")
    new_ids = {o["target"]: o["new_task_id"] for o in done["outcomes"]}
    assert set(new_ids) == {"t1", "u1"} and all(o["outcome"] == "ok" for o in done["outcomes"])
    sent = env.waiting()
    assert len(sent) == 2
    by_parent = {m["headers"]["parent_id"]: m for m in sent}
    assert by_parent["t1"]["headers"]["id"] == new_ids["t1"]
    assert by_parent["t1"]["headers"]["task"] == "tests.fail_transient"
    assert by_parent["t1"]["body"][0] == ["m1"]
    assert by_parent["t1"]["headers"]["celery_ops_exporter_retry_of"] == "t1"
    # Replay of the same approval: refused, nothing sent again.
    again = env.decide(plan)
    assert again.status_code == 409 and "already decided" in again.json()["message"]
    assert env.waiting() == []
    # A new plan does not propose what a plan already retried.
    assert env.propose(mode="balanced")["actions"] == []
    assert env.client.get(f"/api/plans/{plan['id']}", headers=HEAD_V).json()["status"] == "executed"


def test_deny_changes_nothing_and_cannot_be_approved_after() -> None:
    env = PlanEnv()
    _ledger_with_mixed_failures(env)
    plan = env.propose(mode="conservative")
    assert env.decide(plan, "deny").json()["status"] == "denied"
    assert env.decide(plan).status_code == 409
    assert env.waiting() == []


def test_wrong_digest_and_expiry_are_refused() -> None:
    env = PlanEnv(plan_ttl=60.0)
    _ledger_with_mixed_failures(env)
    plan = env.propose(mode="conservative")
    wrong = env.decide(plan, digest="0" * 64)
    assert wrong.status_code == 409 and "digest" in wrong.json()["message"]
    env.clock.advance(61)
    assert env.client.get(f"/api/plans/{plan['id']}", headers=HEAD_V).json()["status"] == "expired"
    expired = env.decide(plan)
    assert expired.status_code == 410 and "expired" in expired.json()["message"]
    assert env.waiting() == []
    counts = env.state.attached(ApiCounters).copy()[1]
    assert counts["refused"] == 2 and counts["proposed"] == 1


def test_audit_trail_records_who_did_what_newest_first() -> None:
    env = PlanEnv()
    _ledger_with_mixed_failures(env)
    plan = env.propose(mode="conservative")
    env.decide(plan)
    env.decide(plan)
    audit = env.client.get("/api/audit", headers=HEAD_O).json()["entries"]
    assert [e["event"] for e in audit] == ["refused", "executed", "approved", "proposed"]
    assert {e["plan_id"] for e in audit} == {plan["id"]}
    assert audit[1]["detail"]["outcomes"][0]["outcome"] == "ok"
    assert "m1" not in str(audit)  # no task args in the audit trail
    page = env.client.get("/api/audit", params={"limit": 2}, headers=HEAD_O).json()
    rest = env.client.get(
        "/api/audit", params={"cursor": page["next_cursor"]}, headers=HEAD_O
    ).json()
    assert [e["event"] for e in rest["entries"]] == ["approved", "proposed"]


def test_plans_survive_a_new_router_on_the_same_redis() -> None:
    env = PlanEnv()
    _ledger_with_mixed_failures(env)
    plan = env.propose(mode="conservative")
    restarted = TestClient(make_app(new_state(env.config), env.io, env.redis))
    assert (
        restarted.get(f"/api/plans/{plan['id']}", headers=HEAD_V).json()["digest"] == plan["digest"]
    )
    assert restarted.get("/api/audit", headers=HEAD_O).json()["entries"][0]["event"] == "proposed"


def test_plan_json_roundtrip_keeps_digest_valid() -> None:
    from exporter.remediation.plan import digest_of

    env = PlanEnv()
    _ledger_with_mixed_failures(env)
    plan = env.propose(mode="balanced")
    stored = read_plan(env.redis.get(f"celery-ops-exporter:plan:{plan['id']}") or b"")
    assert isinstance(stored, Plan)
    assert digest_of(stored) == stored.digest == plan["digest"]
    tampered = replace(stored, actions=[replace(stored.actions[0], args=["other"])])
    assert digest_of(tampered) != stored.digest


def test_two_replicas_approving_at_once_run_the_plan_once() -> None:
    import threading

    env = PlanEnv()
    _ledger_with_mixed_failures(env)
    plan = env.propose(mode="conservative")
    other = TestClient(make_app(new_state(env.config), env.io, env.redis))
    body = {"plan_id": plan["id"], "digest": plan["digest"]}
    codes: list[int] = []
    barrier = threading.Barrier(2)

    def approve(client: TestClient) -> None:
        barrier.wait()
        codes.append(client.post("/api/approve", json=body, headers=HEAD_O).status_code)

    threads = [threading.Thread(target=approve, args=(c,)) for c in (env.client, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [200, 409]
    assert len(env.waiting()) == 1


def test_purge_runs_only_from_an_explicit_request_and_reports_the_count() -> None:
    env = PlanEnv()
    for i in range(3):
        env.app.send_task("tests.add", args=[i, i], queue="dead")
    plan = env.propose(purge_queue="dead")
    assert [(a["action"], a["target"]) for a in plan["actions"]] == [("purge", "dead")]
    assert "cannot be undone" in plan["actions"][0]["description"]
    done = env.decide(plan).json()
    assert done["outcomes"][0]["outcome"] == "ok"
    assert done["outcomes"][0]["detail"] == "purged 3 message(s) from queue 'dead'"
    assert env.waiting("dead") == []
    assert env.state.attached(ApiCounters).copy()[2] == {("purge", "ok"): 1}


def test_failed_actions_are_reported_and_a_failed_retry_can_be_proposed_again() -> None:
    from exporter.celery_io import make_app as make_celery_app

    env = PlanEnv()
    dead = make_celery_app(env.config.replace(broker_url="redis://127.0.0.1:1/0"))
    dead.conf.update(task_publish_retry=False, broker_connection_timeout=0.3)
    env.io = CeleryIO(env.config, app=dead)
    env.client = TestClient(make_app(env.state, env.io, env.redis))
    env.state.ledger.apply(failure("t1", args=["m1"]))
    plan = env.propose(task_ids=["t1"], purge_queue="q")
    done = env.decide(plan).json()
    assert done["status"] == "executed"
    assert [o["outcome"] for o in done["outcomes"]] == ["error", "error"]
    assert "OperationalError" in done["outcomes"][0]["error"]
    assert done["outcomes"][1]["error"].startswith("not tried: broker unreachable")
    # The retry never left, so its claim was released: a new plan may propose it again.
    assert [a["target"] for a in env.propose(mode="conservative")["actions"]] == ["t1"]
    assert env.state.attached(ApiCounters).copy()[2] == {
        ("retry", "error"): 1,
        ("purge", "error"): 1,
    }


def test_odd_backend_records_are_not_retryable_and_never_crash_fix_it() -> None:
    import json

    env = PlanEnv()
    env.state.ledger.apply(failure("t1", complete=False))
    env.state.ledger.apply(failure("t2", complete=False))
    env.redis.set(
        "celery-task-meta-t1",
        json.dumps({"status": "FAILURE", "name": 5, "args": [], "kwargs": {}, "queue": ["q"]}),
    )
    env.redis.set(
        "celery-task-meta-t2",
        json.dumps(
            {"status": "FAILURE", "name": "tests.add", "args": "1, 2", "kwargs": {}, "queue": 9}
        ),
    )
    env.redis.set("celery-task-meta-x1", json.dumps({"status": 3, "name": {}, "queue": 1}))
    plan = env.propose(mode="balanced", task_ids=["t1", "t2", "x1"])
    assert plan["actions"] == []
    reasons = {s["task_id"]: s["reason"] for s in plan["not_actionable"]}
    assert "unknown" in reasons["t1"] and "JSON list" in reasons["t2"]
    assert "not failed" in reasons["x1"]


def test_audit_stream_is_capped() -> None:
    from exporter.remediation.store import PlanStore

    client = fakeredis.FakeRedis()
    store = PlanStore(client, "app1:", audit_max=10)
    for i in range(500):
        store.audit("proposed", "operator#x", T0 + i, f"p{i}")
    # MAXLEN ~ trims in whole stream nodes (100 entries by default), never below the cap.
    assert 10 <= client.xlen("app1:celery-ops-exporter:audit") <= 110
    assert store.audit_entries(1)[0]["plan_id"] == "p499"
