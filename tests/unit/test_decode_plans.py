"""The plan store's decoder is total: whatever a Redis client stored under a plan, outcome or
audit key, it returns a plan the API can serialize, a reason, or an entry; it never raises."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.api.models import AuditEntry
from exporter.api.views import plan_out
from exporter.decode.plans import INVALID_JSON, NOT_A_PLAN, read_audit, read_outcome, read_plan
from exporter.remediation.plan import Action, Plan, RetryClaim
from tests.support.api import make_config
from tests.support.hostile import dumps, raw_inputs, values

SETTINGS = settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
PLAN = Plan(
    id="0123456789abcdef0123456789abcdef",
    mode="conservative",
    created_at=1_700_000_000.0,
    expires_at=1_700_000_900.0,
    proposed_by="operator#a",
    actions=[Action("retry", "t1", "retry t1", "transient", "tests.x", "celery", [1], {})],
    digest="d" * 64,
)


def _plan_fields() -> st.SearchStrategy[dict[str, Any]]:
    good = json.loads(PLAN.to_json())
    return st.dictionaries(st.sampled_from(sorted(good)), values, max_size=4).map(
        lambda changes: {**good, **changes}
    )


def test_a_stored_plan_reads_back_equal() -> None:
    assert read_plan(PLAN.to_json()) == PLAN
    assert read_plan(PLAN.to_json().encode()) == PLAN


def test_what_is_not_a_plan_has_a_reason() -> None:
    assert read_plan(b"{no") == INVALID_JSON
    assert read_plan(b"[" * 50_000) == INVALID_JSON
    assert read_plan(b"[]") == NOT_A_PLAN
    bad_kind = json.loads(PLAN.to_json())
    bad_kind["actions"][0]["kind"] = "shell"
    assert read_plan(json.dumps(bad_kind)) == NOT_A_PLAN
    bad_time = {**json.loads(PLAN.to_json()), "expires_at": float("inf")}
    assert read_plan(json.dumps(bad_time)) == NOT_A_PLAN


@SETTINGS
@given(st.one_of(raw_inputs(), _plan_fields().map(dumps)))
def test_read_plan_never_raises_and_what_it_returns_serializes(raw: bytes) -> None:
    plan = read_plan(raw)
    if isinstance(plan, Plan):
        plan_out(plan, 1_700_000_000.0, make_config()).model_dump_json()
    else:
        assert plan in (INVALID_JSON, NOT_A_PLAN)


@SETTINGS
@given(raw_inputs(), st.dictionaries(st.sampled_from(["event", "at", "detail", "x"]), values))
def test_outcomes_and_audit_entries_never_raise(raw: bytes, fields: dict[str, Any]) -> None:
    outcome = read_outcome(raw)
    assert outcome is None or isinstance(outcome["index"], int)
    as_redis = {k: (v if isinstance(v, str) else dumps(v)) for k, v in fields.items()}
    for entry in (read_audit(b"1-0", as_redis), read_audit("1-1", {"detail": raw, "at": raw})):
        AuditEntry(**{**entry, "at": 0}).model_dump_json()


def test_a_retry_claim_always_decodes() -> None:
    from exporter.decode.plans import read_claim

    claim = RetryClaim("p1", index=2, new_task_id="n1", state="sending")
    assert read_claim(claim.to_json()) == claim
    assert read_claim(b"0f3a") == RetryClaim("0f3a")  # an older version: the bare plan id
    assert read_claim(b"[" * 50_000).state == "sent"  # once a RecursionError: never raises
    odd = read_claim('{"plan": ["x"], "index": true, "new": "\\ud800", "state": 1}')
    assert odd == RetryClaim("", None, "\ufffd", "sent")
