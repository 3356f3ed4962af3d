"""The side API's routes: `build_router(state, io)` for the HTTP server to mount, and
`install_error_handlers(app)` so every error is JSON with a `message`.

No `from __future__ import annotations` here: FastAPI must evaluate the handlers' annotations
at definition time to see the closure-local auth dependencies. Handlers are plain `def`s:
FastAPI runs them in its thread pool, so a Redis or broker round trip (task lookup, plan
store, approval) never blocks the event loop serving /metrics.
"""

import logging
import re
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import redis
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from exporter.api import page, views
from exporter.api.actions import Remediation
from exporter.api.auth import OPERATOR, VIEWER, Principal, require
from exporter.api.models import (
    ApproveRequest,
    AuditEntry,
    AuditPage,
    ErrorOut,
    FixItRequest,
    PlanOut,
    Sitrep,
    TaskOut,
    TaskPage,
)
from exporter.api.sitrep import build_sitrep
from exporter.api.stats import ApiStats, stats_for
from exporter.celery_io import CeleryIO
from exporter.remediation.backend import NotJson, make_client, read_task_meta
from exporter.remediation.store import PlanStore
from exporter.state import State

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
_STREAM_ID = re.compile(r"^[0-9]{1,15}-[0-9]{1,15}$")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 410, 422, 503)
}


class _CountingRoute(APIRoute):
    """Counts every request in celery_exporter_api_requests_total{endpoint,code}."""

    stats: ApiStats

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        endpoint, stats = self.path, self.stats

        async def counted(request: Request) -> Response:
            try:
                response = await handler(request)
            except StarletteHTTPException as exc:
                stats.request(endpoint, exc.status_code)
                raise
            except RequestValidationError:
                stats.request(endpoint, 422)
                raise
            except Exception:
                stats.request(endpoint, 500)
                raise
            stats.request(endpoint, response.status_code)
            return response

        return counted


def build_router(
    state: State, io: CeleryIO, *, client: redis.Redis | None = None, store: PlanStore | None = None
) -> APIRouter:
    """All /api routes and the /ui page. `client`/`store` default to the result backend."""
    config, stats = state.config, stats_for(state)
    if client is None:
        client = make_client(config)
    if store is None and client is not None:
        store = PlanStore(client, config.global_keyprefix, config.audit_max_entries)
    fix = Remediation(state, io, client, store, stats)
    route_class = type("CountingRoute", (_CountingRoute,), {"stats": stats})
    router = APIRouter(route_class=route_class, responses=ERRORS)

    def viewer(
        request: Request, _c: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        return require(request, config, VIEWER)

    def operator(
        request: Request, _c: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        return require(request, config, OPERATOR)

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
        return TaskPage(
            items=[views.task_from_record(r, config) for r in rows],
            next_cursor=views.encode_cursor(rows[-1]) if more and rows else None,
        )

    @router.get("/api/tasks/{task_id}", response_model=TaskOut, tags=["read"])
    def task(
        task_id: Annotated[str, Path(min_length=1, max_length=200)],
        _p: Annotated[Principal, Depends(viewer)],
    ) -> TaskOut:
        """One task from the ledger, else from the result backend (JSON records only)."""
        rec = state.ledger.get(task_id)
        if rec is not None:
            return views.task_from_record(rec, config)
        try:
            meta = read_task_meta(client, config, task_id)
        except NotJson as exc:
            raise HTTPException(404, _unreadable(task_id, exc.reason)) from None
        except redis.RedisError as exc:
            raise HTTPException(503, f"result backend unavailable: {exc}") from None
        if meta is None:
            raise HTTPException(
                404,
                f"task {task_id} is unknown to the exporter and the result "
                "backend (expired, never stored, or ignore_result)",
            )
        return views.task_from_backend(task_id, meta, config)

    @router.post("/api/fix-it", response_model=PlanOut, status_code=201, tags=["actions"])
    def fix_it(body: FixItRequest, p: Annotated[Principal, Depends(operator)]) -> PlanOut:
        """Propose a remediation plan. Changes nothing: approve it to run it."""
        plan = _store_call(lambda: fix.propose(body, p.name))
        return views.plan_out(plan, state.clock.time(), config)

    @router.post("/api/approve", response_model=PlanOut, tags=["actions"])
    def approve(body: ApproveRequest, p: Annotated[Principal, Depends(operator)]) -> PlanOut:
        """Approve (run once) or deny a plan, by id and digest."""
        plan = _store_call(lambda: fix.decide(body, p.name))
        return views.plan_out(plan, state.clock.time(), config)

    @router.get("/api/plans/{plan_id}", response_model=PlanOut, tags=["read"])
    def get_plan(
        plan_id: Annotated[str, Path(min_length=1, max_length=64)],
        _p: Annotated[Principal, Depends(viewer)],
    ) -> PlanOut:
        """A plan: its actions, status, who decided and what each action returned."""
        plan = _store_call(lambda: fix.get(plan_id))
        return views.plan_out(plan, state.clock.time(), config)

    @router.get("/api/audit", response_model=AuditPage, tags=["actions"])
    def audit(
        _p: Annotated[Principal, Depends(operator)],
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: Annotated[str | None, Query(pattern=_STREAM_ID.pattern)] = None,
    ) -> AuditPage:
        """Who proposed, approved or denied what, and what ran; newest first."""
        if cursor is not None and not _STREAM_ID.match(cursor):
            raise HTTPException(400, "cursor is not an audit entry id")
        rows = _store_call(lambda: fix.audit(limit, cursor))
        entries = [
            AuditEntry(**{**r, "at": views.ts(r["at"]) or datetime.fromtimestamp(0, timezone.utc)})
            for r in rows
        ]
        return AuditPage(
            entries=entries, next_cursor=entries[-1].id if len(entries) == limit else None
        )

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


def _store_call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except redis.RedisError as exc:
        raise HTTPException(503, f"plan store (result backend Redis) unavailable: {exc}") from None


def install_error_handlers(app: FastAPI) -> None:
    """Make every error a JSON object with a human `message` (and the original `detail`)."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(
            {"message": message, "detail": exc.detail},
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"invalid request: {where}: {first.get('msg', 'bad value')}"
        return JSONResponse({"message": message, "detail": errors}, 422)

    @app.exception_handler(Exception)
    async def crashed(_r: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in the API")
        return JSONResponse({"message": "internal error; the exporter log has details"}, 500)
