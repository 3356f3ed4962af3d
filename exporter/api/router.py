"""The side API's routes: `build_router(state, io)` for the app factory
(`exporter.http.create_app`) to mount; errors.py makes every error JSON with a `message`.

No `from __future__ import annotations` here: FastAPI must evaluate the handlers' annotations
at definition time to see the closure-local auth dependencies. Handlers that call Redis or the
broker (task lookup, plan store, approval) are `async def`s that hand that work to the API's
own bounded pool (gate.py): it never shares threads with /metrics, and beyond
`--api-max-concurrent` calls in flight a request is answered 503 at once. Handlers that read
memory only (sitrep, recent) stay plain `def`s on FastAPI's thread pool, which therefore never
waits for Redis. Auth refusals are counted, logged and audited by refusals.py.
"""

import logging
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import redis
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from exporter.api import browse, page, periodic, views
from exporter.api.auth import OPERATOR, VIEWER, Principal, Refused, require
from exporter.api.errors import ERRORS, CountingRoute, install_error_handlers
from exporter.api.gate import ApiGate, api_client
from exporter.api.models import (
    PLAN_ID_PATTERN,
    TASK_ID_PATTERN,
    ApproveRequest,
    AuditEntry,
    AuditPage,
    FixItRequest,
    PlanOut,
    Sitrep,
    TaskOut,
    TaskPage,
    TrendsOut,
)
from exporter.api.refusals import RefusalLog
from exporter.api.sitrep import build_sitrep
from exporter.apicounters import ApiCounters
from exporter.celery_io import CeleryIO
from exporter.outage import OutageLog
from exporter.remediation import errors
from exporter.remediation.backend import NotJson, read_task_meta
from exporter.remediation.service import Remediation
from exporter.remediation.store import PlanStore
from exporter.state import State

__all__ = ["build_router", "install_error_handlers"]
log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="A viewer or operator token")
STATUSES = Literal[
    "SUCCESS",
    "FAILURE",
    "RETRY",
    "REVOKED",
    "REJECTED",
    "STARTED",
    "RECEIVED",
    "SENT",
    "success",
    "failure",
    "retry",
    "revoked",
    "rejected",
    "started",
    "received",
    "sent",
]
_SINCE = "Updated at or after: ISO-8601 (UTC when no zone) or epoch seconds"
_UNTIL = "Updated at or before: ISO-8601 (UTC when no zone) or epoch seconds"
# An audit entry id as Redis writes it (no leading zeros), after 0-0: an exclusive range
# cannot end before the smallest id, so Redis refused "(0-0" (it answered 503 before).
_ID_PART = "[1-9][0-9]{0,14}"
_STREAM_ID = re.compile(f"^({_ID_PART}-(0|{_ID_PART})|0-{_ID_PART})$")
# The fix-it service's refusals as HTTP answers (the message is the error's text).
STATUS_OF: dict[type[errors.RemediationError], int] = {
    errors.NoPlanStore: 503,
    errors.PlanNotFound: 404,
    errors.PlanUnreadable: 404,
    errors.DigestMismatch: 409,
    errors.PlanExpired: 410,
    errors.AlreadyDecided: 409,
}


def build_router(
    state: State, io: CeleryIO, *, client: redis.Redis | None = None, store: PlanStore | None = None
) -> APIRouter:
    """All /api routes and the /ui page. `client`/`store` default to the result backend."""
    config, stats = state.config, state.attached(ApiCounters)
    if client is None:
        client = api_client(config)
    if store is None and client is not None:
        store = PlanStore(client, config.global_keyprefix, config.audit_max_entries)
    fix = Remediation(state, io, client, store, stats)
    gate = ApiGate(config.api_max_concurrent, stats)
    refusals = RefusalLog(stats, state.clock, store)
    backend_outage = OutageLog(log, "API: result backend Redis")
    route_class = type("CountingRoute", (CountingRoute,), {"stats": stats})
    router = APIRouter(route_class=route_class, responses=ERRORS)

    def guard(request: Request, role: str) -> Principal:
        try:
            return require(request, config, role)
        except Refused as exc:
            refusals.note(request, exc)
            raise

    # async: no I/O here, so auth never takes a thread of any pool.
    async def viewer(
        request: Request, _c: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        return guard(request, VIEWER)

    async def operator(
        request: Request, _c: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        return guard(request, OPERATOR)

    def redis_call(what: str, fn: Callable[[], Any]) -> Any:
        """fn() on a gate thread: a Redis error is 503 and logged once per outage."""
        try:
            out = fn()
        except redis.ResponseError as exc:
            if "WRONGTYPE" in str(exc):  # inside a pipeline it follows "Command # n ..."
                raise  # the key exists with another type: the caller says what that means
            backend_outage.failed(exc)
            raise HTTPException(503, f"{what} unavailable: {exc}") from None
        except redis.RedisError as exc:
            backend_outage.failed(exc)
            raise HTTPException(503, f"{what} unavailable: {exc}") from None
        backend_outage.ok()
        return out

    def store_call(fn: Callable[[], Any]) -> Any:
        """fn() of the fix-it service: its refusals are answered with their HTTP status."""
        try:
            return redis_call("plan store (result backend Redis)", fn)
        except errors.RemediationError as exc:
            raise HTTPException(STATUS_OF.get(type(exc), 409), str(exc)) from None

    @router.get("/api/sitrep", response_model=Sitrep, tags=["read"])
    def sitrep(_p: Annotated[Principal, Depends(viewer)]) -> Sitrep:
        """The cluster at a glance, with what needs doing now and what to watch."""
        return build_sitrep(state)

    @router.get("/api/tasks/recent", response_model=TaskPage, tags=["read"])
    def recent(
        _p: Annotated[Principal, Depends(viewer)],
        status: STATUSES | None = None,
        name: Annotated[str | None, Query(max_length=300)] = None,
        queue: Annotated[str | None, Query(max_length=300)] = None,
        worker: Annotated[str | None, Query(max_length=300)] = None,
        since: Annotated[datetime | float | None, Query(description=_SINCE)] = None,
        until: Annotated[datetime | float | None, Query(description=_UNTIL)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(pattern=views.CURSOR_PATTERN)] = None,
    ) -> TaskPage:
        """Finished and retried tasks, newest first; failures are kept longer than successes."""
        try:
            after = views.decode_cursor(cursor) if cursor else None
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        failed_only = status is not None and status.upper() == "FAILURE"
        records = views.sort_newest_first(state.ledger.recent(failed_only=failed_only))
        rows, more = views.filter_records(
            records,
            status=status,
            name=name,
            queue=queue,
            worker=worker,
            since=_epoch(since),
            until=_epoch(until),
            after=after,
            limit=limit,
        )
        matched, by_status, kept, oldest = browse.page_counts(
            state.ledger.recent() if failed_only else records,
            status=status,
            name=name,
            queue=queue,
            worker=worker,
            since=_epoch(since),
            until=_epoch(until),
        )
        return TaskPage(
            items=[views.task_from_record(r, config) for r in rows],
            next_cursor=views.encode_cursor(rows[-1]) if more and rows else None,
            matched=matched,
            by_status=by_status,
            kept=kept,
            oldest_at=views.ts(oldest),
        )

    @router.get("/api/trends", response_model=TrendsOut, tags=["read"])
    def trends(_p: Annotated[Principal, Depends(viewer)]) -> TrendsOut:
        """Success rate, finished tasks per minute and queue depth over the last hour (60
        points of --trends-step seconds), kept in memory from each poll."""
        now = state.clock.time()
        return browse.trends_out(state.trends.points_since(now), state.trends.step)

    @router.get("/api/tasks/{task_id}", response_model=TaskOut, tags=["read"])
    async def task(
        task_id: Annotated[str, Path(pattern=TASK_ID_PATTERN, description="A Celery task id")],
        _p: Annotated[Principal, Depends(viewer)],
    ) -> TaskOut:
        """One task from the ledger, else from the result backend (JSON records only)."""
        rec = state.ledger.get(task_id)  # memory: on the event loop, like /metrics
        kept = state.details.get(task_id)
        if rec is not None:
            return browse.detail(views.task_from_record(rec, config), rec, kept)
        try:
            meta = await gate.run(
                lambda: redis_call(
                    "result backend", lambda: read_task_meta(client, config, task_id)
                )
            )
        except NotJson as exc:
            raise HTTPException(404, _unreadable(task_id, exc.reason)) from None
        except redis.ResponseError:  # WRONGTYPE: not something a worker stored
            raise HTTPException(
                404,
                f"task {task_id}: its result key holds another kind of Redis value than a "
                "Celery result",
            ) from None
        if meta is None:
            raise HTTPException(
                404,
                f"task {task_id} is unknown to the exporter and the result "
                "backend (expired, never stored, or ignore_result)",
            )
        out = views.task_from_backend(task_id, meta, config)
        return browse.detail(out, None, kept, meta.traceback)

    @router.post("/api/fix-it", response_model=PlanOut, status_code=201, tags=["actions"])
    async def fix_it(body: FixItRequest, p: Annotated[Principal, Depends(operator)]) -> PlanOut:
        """Propose a remediation plan. Changes nothing: approve it to run it."""
        plan = await gate.run(
            lambda: store_call(
                lambda: fix.propose(
                    p.name,
                    body.mode,
                    body.task_ids,
                    body.task_name,
                    body.purge_queue,
                    body.run_entries,
                )
            )
        )
        return views.plan_out(plan, state.clock.time(), config)

    @router.post("/api/approve", response_model=PlanOut, tags=["actions"])
    async def approve(body: ApproveRequest, p: Annotated[Principal, Depends(operator)]) -> PlanOut:
        """Approve (run once) or deny a plan, by id and digest."""
        plan = await gate.run(
            lambda: store_call(
                lambda: fix.decide(p.name, body.plan_id, body.digest, body.decision, body.comment)
            )
        )
        return views.plan_out(plan, state.clock.time(), config)

    @router.get("/api/plans/{plan_id}", response_model=PlanOut, tags=["read"])
    async def get_plan(
        plan_id: Annotated[str, Path(pattern=PLAN_ID_PATTERN, description="A plan's id")],
        _p: Annotated[Principal, Depends(viewer)],
    ) -> PlanOut:
        """A plan: its actions, status, who decided and what each action returned."""
        # A key that holds something else than a plan answers 404 (PlanUnreadable).
        plan = await gate.run(lambda: store_call(lambda: fix.get(plan_id)))
        return views.plan_out(plan, state.clock.time(), config)

    @router.get("/api/audit", response_model=AuditPage, tags=["actions"])
    async def audit(
        _p: Annotated[Principal, Depends(operator)],
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: Annotated[str | None, Query(pattern=_STREAM_ID.pattern)] = None,
    ) -> AuditPage:
        """Who proposed, approved or denied what, and what ran; newest first."""
        if cursor is not None and not _STREAM_ID.match(cursor):
            raise HTTPException(400, "cursor is not an audit entry id")
        rows = await gate.run(lambda: store_call(lambda: fix.audit(limit, cursor)))
        entries = [
            AuditEntry(**{**r, "at": views.ts(r["at"]) or datetime.fromtimestamp(0, timezone.utc)})
            for r in rows
        ]
        return AuditPage(
            entries=entries, next_cursor=entries[-1].id if len(entries) == limit else None
        )

    periodic.add_routes(router, viewer, state)
    page.add_routes(router)
    return router


def _unreadable(task_id: str, reason: str) -> str:
    if reason in ("pickle", "not_json"):
        return f"task {task_id} is stored in a format other than JSON; the exporter never unpickles"
    return f"task {task_id}: the result backend's record cannot be read ({reason})"


def _epoch(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    if value.tzinfo is None:  # a time without a zone is read as UTC, like every time we show
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()
