"""The fix-it service without HTTP: plain arguments in, plans or domain errors out; the router
answers each domain error with the status the API documents."""

from __future__ import annotations

import pytest

from exporter.api.router import STATUS_OF
from exporter.apicounters import ApiCounters
from exporter.remediation import errors
from exporter.remediation.service import Remediation
from exporter.remediation.store import PlanStore
from tests.support.api import T0, PlanEnv, failure


def _service(env: PlanEnv, store: bool = True) -> Remediation:
    plans = PlanStore(env.redis) if store else None
    return Remediation(env.state, env.io, env.redis, plans, env.state.attached(ApiCounters))


def test_propose_and_decide_take_plain_arguments() -> None:
    env = PlanEnv()
    env.state.ledger.apply_many([failure("t1", at=T0)])
    fix = _service(env)
    plan = fix.propose("operator#a", "conservative")
    assert [a.target for a in plan.actions] == ["t1"]
    denied = fix.decide("operator#b", plan.id, plan.digest, "deny", "not now")
    assert (denied.status, denied.decided_by, denied.comment) == ("denied", "operator#b", "not now")
    assert fix.get(plan.id).status == "denied"


def test_refusals_are_domain_errors() -> None:
    env = PlanEnv()
    env.state.ledger.apply_many([failure("t1", at=T0)])
    with pytest.raises(errors.NoPlanStore, match="--result-backend"):
        _service(env, store=False).propose("operator#a")
    fix = _service(env)
    with pytest.raises(errors.PlanNotFound):
        fix.get("0" * 32)
    plan = fix.propose("operator#a")
    with pytest.raises(errors.DigestMismatch, match="digest"):
        fix.decide("operator#a", plan.id, "f" * 64)
    env.clock.advance(env.config.plan_ttl + 1)
    with pytest.raises(errors.PlanExpired):
        fix.decide("operator#a", plan.id, plan.digest)
    fresh = fix.propose("operator#a")
    fix.decide("operator#a", fresh.id, fresh.digest, "deny")
    with pytest.raises(errors.AlreadyDecided, match="at most once"):
        fix.decide("operator#b", fresh.id, fresh.digest)


def test_every_domain_error_has_its_http_status() -> None:
    kinds = set(errors.RemediationError.__subclasses__())
    assert kinds == set(STATUS_OF)
    assert STATUS_OF[errors.NoPlanStore] == 503
    assert STATUS_OF[errors.PlanExpired] == 410
    assert STATUS_OF[errors.DigestMismatch] == STATUS_OF[errors.AlreadyDecided] == 409
