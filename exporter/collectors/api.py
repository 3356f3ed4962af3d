"""Collector for the side API's own metrics: requests, fix-it plans and executed actions."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from exporter.apicounters import REFUSAL_REASONS, ApiCounters
from exporter.state import State

# Outcomes that always exist, so rate() and absent() work before the first plan.
PLAN_OUTCOMES = ("proposed", "approved", "denied", "refused")


class ApiCollector:
    def __init__(self, state: State) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        requests, plans, actions = self._state.attached(ApiCounters).copy()
        req = CounterMetricFamily(
            "celery_exporter_api_requests",
            "Requests to the side API (/api and /ui) by route and HTTP status code.",
            labels=["endpoint", "code"],
        )
        for (endpoint, code), value in sorted(requests.items()):
            req.add_metric([endpoint, code], value)
        yield req
        plan = CounterMetricFamily(
            "celery_exporter_plans",
            "Fix-it plans by outcome: proposed, approved, denied, refused (expired, replayed "
            "or wrong digest).",
            labels=["outcome"],
        )
        for outcome in sorted(set(PLAN_OUTCOMES) | set(plans)):
            plan.add_metric([outcome], plans.get(outcome, 0))
        yield plan
        act = CounterMetricFamily(
            "celery_exporter_actions",
            "Remediation actions carried out after approval, by action (retry, revoke, purge) "
            "and outcome (ok, error, skipped).",
            labels=["action", "outcome"],
        )
        for (action, outcome), value in sorted(actions.items()):
            act.add_metric([action, outcome], value)
        yield act
        yield from _bounds(self._state)


def _bounds(state: State) -> Iterator[Metric]:
    refused, overloaded, unaudited = state.attached(ApiCounters).bounds()
    ref = CounterMetricFamily(
        "celery_exporter_api_refused",
        "Requests refused with 401/403 by reason: missing_token, invalid_token, "
        "insufficient_role, disabled (no token of that kind configured); /metrics refusals "
        "(--metrics-auth) included.",
        labels=["reason"],
    )
    for reason in sorted(set(REFUSAL_REASONS) | set(refused)):
        ref.add_metric([reason], refused.get(reason, 0))
    yield ref
    yield CounterMetricFamily(
        "celery_exporter_api_overloaded",
        "API requests answered 503 at once because --api-max-concurrent calls to the result "
        "backend were already in flight.",
        value=overloaded,
    )
    yield CounterMetricFamily(
        "celery_exporter_api_refusals_unaudited",
        "Refused API requests not written to the audit stream: the result backend failed, or "
        "the backlog of audit writes was full (refusals are still counted and logged).",
        value=unaudited,
    )
