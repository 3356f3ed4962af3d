"""Crash points of plan execution, on fakeredis: the executor "dies" (a BaseException nothing
catches, as SIGKILL would leave it) between claim and send, between send and record, and after
a record. Each time the plan reads back `interrupted` with exactly what ran, no failure is
replayed twice, and proposing again covers exactly the rest (an in-doubt retry only once it is
known not to have run, or by id, knowingly)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from exporter.decode.plans import read_claim
from exporter.remediation import executor, journal
from exporter.remediation.plan import DOUBT_HOLD_SECONDS
from exporter.remediation.store import PlanStore
from tests.support.api import HEAD_V, T0, PlanEnv, failure

IDS = ["t1", "t2", "t3", "t4", "t5"]
PREFIX = "celery-ops-exporter:"


class Crash(BaseException):
    """The process dies here: nothing in the executor may catch it."""


def _env() -> PlanEnv:
    env = PlanEnv()
    # Newest first: t1 is the newest failure, so plans list t1..t5 in order.
    env.state.ledger.apply_many([failure(t, args=[t], at=T0 - i) for i, t in enumerate(IDS)])
    return env


def _approve_and_crash(env: PlanEnv, plan: dict[str, Any]) -> None:
    with pytest.raises(Crash):
        env.remediation().decide("operator#test", plan["id"], plan["digest"])
    # The process is gone: its lease expires (here at once, instead of after LEASE_SECONDS).
    assert env.redis.delete(f"{PREFIX}plan:{plan['id']}:lease") == 1


def _crash_on_send(monkeypatch: pytest.MonkeyPatch, n: int, after: bool) -> None:
    real, calls = executor.control.send_retry, Counter[str]()

    def send(*args: Any, **kwargs: Any) -> str:
        calls["n"] += 1
        if calls["n"] == n and not after:
            raise Crash("between claim and send")
        out = real(*args, **kwargs)
        if calls["n"] == n:
            raise Crash("between send and record")
        return out

    monkeypatch.setattr(executor.control, "send_retry", send)


def _sent_parents(env: PlanEnv) -> Counter[str]:
    """Each failure's replays, as the broker holds them (drained)."""
    return Counter(m["headers"]["parent_id"] for m in env.waiting())


def _plan(env: PlanEnv, plan_id: str) -> dict[str, Any]:
    resp = env.client.get(f"/api/plans/{plan_id}", headers=HEAD_V)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _targets(plan: dict[str, Any]) -> list[str]:
    return [a["target"] for a in plan["actions"]]


def test_crash_between_claim_and_send_blocks_nothing_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env()
    plan = env.propose(mode="conservative")
    assert _targets(plan) == IDS
    _crash_on_send(monkeypatch, 3, after=False)
    _approve_and_crash(env, plan)
    assert _sent_parents(env) == Counter({"t1": 1, "t2": 1})

    seen = _plan(env, plan["id"])
    assert seen["status"] == "interrupted" and seen["interrupted_at"]
    assert [o["outcome"] for o in seen["outcomes"]] == ["ok", "ok", "unknown"]
    doubt = seen["outcomes"][2]
    assert doubt["target"] == "t3" and "in doubt" in doubt["detail"]
    assert seen["not_run"] == [3, 4]
    # The in-doubt claim is held briefly, never for the 7 days of a sent retry.
    assert 0 < env.redis.ttl(f"{PREFIX}retried:t3") <= DOUBT_HOLD_SECONDS
    audit = env.client.get("/api/audit", headers={"Authorization": "Bearer operator-token-456"})
    assert audit.json()["entries"][0]["event"] == "interrupted"

    again = env.propose(mode="conservative")
    assert _targets(again) == ["t4", "t5"]
    reasons = {s["task_id"]: s["reason"] for s in again["not_actionable"]}
    assert reasons["t3"].startswith("in doubt") and "already retried" in reasons["t1"]
    # By id, knowingly: the plan says the earlier retry is in doubt, and taking it over works.
    by_id = env.propose(task_ids=["t3"])
    assert _targets(by_id) == ["t3"] and "in doubt" in by_id["actions"][0]["description"]
    monkeypatch.undo()
    assert env.decide(by_id).json()["outcomes"][0]["outcome"] == "ok"
    assert env.decide(again).json()["status"] == "executed"
    assert _sent_parents(env) == Counter({"t3": 1, "t4": 1, "t5": 1})
    assert env.propose(mode="conservative")["actions"] == []


def test_crash_between_send_and_record_never_replays_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env()
    plan = env.propose(mode="conservative")
    _crash_on_send(monkeypatch, 3, after=True)
    _approve_and_crash(env, plan)
    monkeypatch.undo()
    assert _sent_parents(env) == Counter({"t1": 1, "t2": 1, "t3": 1})

    # Not seen yet: in doubt, and no mode proposes it.
    doubt = _plan(env, plan["id"])["outcomes"][2]
    assert doubt["outcome"] == "unknown"
    assert _targets(env.propose(mode="conservative")) == ["t4", "t5"]
    # The worker ran it: the result backend has the new task. Now it counts as retried.
    env.redis.set(f"celery-task-meta-{doubt['new_task_id']}", json.dumps({"status": "SUCCESS"}))
    seen = _plan(env, plan["id"])
    assert [o["outcome"] for o in seen["outcomes"]] == ["ok", "ok", "ok"]
    assert seen["outcomes"][2]["new_task_id"] == doubt["new_task_id"]
    assert env.redis.ttl(f"{PREFIX}retried:t3") > DOUBT_HOLD_SECONDS
    again = env.propose(mode="conservative")
    assert _targets(again) == ["t4", "t5"]
    assert "already retried" in {s["task_id"]: s["reason"] for s in again["not_actionable"]}["t3"]
    by_id = env.propose(task_ids=["t3"])  # not even by id: it was sent
    assert by_id["actions"] == [] and "already retried" in by_id["not_actionable"][0]["reason"]


def test_crash_after_a_record_keeps_every_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env()
    plan = env.propose(mode="conservative")
    real, calls = journal.Journal.record, Counter[str]()

    def record(self: journal.Journal, outcome: dict[str, Any], sent: str | None = None) -> None:
        real(self, outcome, sent)
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash("after the third record")

    monkeypatch.setattr(journal.Journal, "record", record)
    _approve_and_crash(env, plan)
    seen = _plan(env, plan["id"])
    assert seen["status"] == "interrupted"
    assert [(o["target"], o["outcome"]) for o in seen["outcomes"]] == [
        ("t1", "ok"),
        ("t2", "ok"),
        ("t3", "ok"),
    ]
    sent = env.waiting()
    assert Counter(m["headers"]["parent_id"] for m in sent) == Counter(["t1", "t2", "t3"])
    assert {m["headers"]["id"] for m in sent} == {o["new_task_id"] for o in seen["outcomes"]}
    assert seen["not_run"] == [3, 4]
    assert _targets(env.propose(mode="conservative")) == ["t4", "t5"]


def test_a_live_executor_is_not_interrupted_and_a_lost_lease_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env()
    plan = env.propose(mode="conservative")
    real, calls = executor.control.send_retry, Counter[str]()
    views: list[str] = []

    def send(*args: Any, **kwargs: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 1:  # while it runs, a reader sees it executing, untouched
            views.append(_plan(env, plan["id"])["status"])
            # ... and a plan proposed meanwhile leaves out the retry being sent right now.
            meanwhile = env.propose(mode="conservative")
            assert _targets(meanwhile) == ["t2", "t3", "t4", "t5"]
        if calls["n"] == 2:  # a pause longer than the lease: it expired under the executor
            env.redis.delete(f"{PREFIX}plan:{plan['id']}:lease")
        return real(*args, **kwargs)

    monkeypatch.setattr(executor.control, "send_retry", send)
    done = env.decide(plan)
    assert done.status_code == 200 and views == ["executing"]
    body = done.json()
    # The send under way is recorded; nothing after it runs: the plan is interrupted.
    assert body["status"] == "interrupted"
    assert [o["target"] for o in body["outcomes"]] == ["t1", "t2"] and body["not_run"] == [2, 3, 4]
    assert _sent_parents(env) == Counter({"t1": 1, "t2": 1})
    assert env.redis.smembers(f"{PREFIX}executing") == set()


def test_a_finished_plan_leaves_no_lease_and_is_not_listed_as_executing() -> None:
    env = _env()
    plan = env.propose(mode="conservative")
    assert env.decide(plan).json()["status"] == "executed"
    assert not env.redis.exists(f"{PREFIX}plan:{plan['id']}:lease")
    assert env.redis.smembers(f"{PREFIX}executing") == set()
    assert env.redis.llen(f"{PREFIX}plan:{plan['id']}:outcomes") == 5
    claim = read_claim(env.redis.get(f"{PREFIX}retried:t1") or b"")
    assert claim.sent and claim.plan_id == plan["id"] and claim.index == 0


@pytest.mark.parametrize(
    ("raw", "sent", "plan_id"),
    [
        (b"0123abcd", True, "0123abcd"),  # written by an older version: the plan id alone
        (b'{"plan": "p", "index": 2, "new": "x", "state": "sending"}', False, "p"),
        (b"[1, 2]", True, "[1, 2]"),
        (b"\xff\xfe", True, "\ufffd\ufffd"),
        (b'{"plan": "p", "index": "2", "new": 5, "state": "odd"}', True, "p"),
    ],
)
def test_retry_claims_parse_anything(raw: bytes, sent: bool, plan_id: str) -> None:
    claim = read_claim(raw)
    assert claim.sent is sent and claim.plan_id == plan_id


def test_the_heartbeat_renews_the_lease_and_notices_losing_it() -> None:
    from exporter.remediation.plan import Plan
    from tests.support.common import wait_for

    env = _env()
    store = PlanStore(env.redis)
    plan = Plan("p1", "conservative", T0, T0 + 900, "operator#x", actions=[])
    lease = f"{PREFIX}plan:p1:lease"
    book = journal.Journal(store, plan, T0)
    book.start(plan)
    env.redis.pexpire(lease, 300)
    with book.heartbeat(interval=0.02):
        wait_for(lambda: env.redis.pttl(lease) > 1000, 5, what="lease renewed")
        book.check()  # still ours
        env.redis.delete(lease)
        wait_for(lambda: book._lost.is_set(), 5, what="the loss noticed")
    with pytest.raises(journal.LeaseLost):
        book.check()
    assert not book.finish(plan, T0)  # a lost lease never overwrites the interrupted plan


def test_a_plan_left_executing_by_an_older_version_reads_interrupted() -> None:
    env = _env()
    plan = env.propose(mode="conservative")
    key = f"{PREFIX}plan:{plan['id']}"
    stored = json.loads(env.redis.get(key) or b"{}")
    env.redis.set(key, json.dumps({**stored, "status": "executing"}))  # no lease, no outcomes
    seen = _plan(env, plan["id"])
    assert seen["status"] == "interrupted" and seen["not_run"] == [0, 1, 2, 3, 4]
    assert env.decide(plan).status_code == 409  # never run again by itself
