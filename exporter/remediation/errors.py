"""What the fix-it workflow refuses, as domain errors: each one's text says why and what to do.

The service (`service.py`) raises them; the API router maps each to its HTTP status
(`api/router.py`), so nothing below the API knows about HTTP.
"""

from __future__ import annotations


class RemediationError(Exception):
    """A request the fix-it workflow refuses; `str(exc)` is the operator's message."""


class NoPlanStore(RemediationError):
    """No result-backend Redis is configured: plans and the audit trail have nowhere to live."""


class PlanNotFound(RemediationError):
    """No plan with that id: never proposed, or older than its retention."""


class PlanUnreadable(RemediationError):
    """The plan's key holds something this exporter did not write (another type, or JSON that
    is not a plan): it is treated as gone. `reason`: wrong_type, invalid_json, not_a_plan."""

    def __init__(self, plan_id: str, reason: str) -> None:
        super().__init__(f"no readable plan {plan_id!r}: the key holds something else")
        self.plan_id, self.reason = plan_id, reason


class DigestMismatch(RemediationError):
    """The approval names other actions than the plan holds."""


class PlanExpired(RemediationError):
    """The plan was not decided before its expiry."""


class AlreadyDecided(RemediationError):
    """Someone (maybe another replica) decided the plan first: it runs at most once."""
