"""The HTTP front: `/`, `/metrics`, `/-/healthy`, `/-/ready`, and the API when it is built.

`/metrics` serves bytes rendered beforehand from in-memory state (exposition.py), so a
scrape costs well under a millisecond however slow or large the cluster is. `/`, `/metrics`,
`/-/healthy`, `/-/ready` and `/health` (and the /metrics auth check) are `async def`s that do
no I/O: they run on the event loop and never wait for a thread of any pool, so API calls
stuck on a stalled Redis (which have their own bounded pool, api/gate.py) cannot delay them,
on one listener or two (--api-listen).
`/api/docs` is our own page (api/page.py), not FastAPI's CDN-loaded Swagger UI.
"""

from __future__ import annotations

import html

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse
from prometheus_client.registry import CollectorRegistry

from exporter import __version__
from exporter.api import build_router, check_metrics_auth, install_error_handlers
from exporter.api.auth import Refused
from exporter.api.refusals import RefusalLog
from exporter.apicounters import ApiCounters
from exporter.celery_io import CeleryIO
from exporter.collectors import build_registry
from exporter.exposition import Exposition
from exporter.state import State
from exporter.urls import masked_url


def create_app(
    state: State, io: CeleryIO | None = None, *, metrics: bool = True, api: bool = True
) -> FastAPI:
    """The ASGI app. With --api-listen the daemon builds two: one with metrics, one with api."""
    app = FastAPI(
        title="celery-ops-exporter",
        version=__version__,
        docs_url=None,  # served by api/page.py without third-party assets
        redoc_url=None,
        openapi_url="/api/openapi.json" if api else None,
    )
    registry = build_registry(state)
    install_error_handlers(app)
    links = []
    if metrics:
        _add_metrics(app, state, registry)
        links.append('<a href="/metrics">/metrics</a>')
    if api:
        app.include_router(build_router(state, io or CeleryIO(state.config)))
        links += ['<a href="/ui">/ui</a> (operator page)', '<a href="/api/docs">/api/docs</a>']

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        snap = state.snapshot
        status = "broker reachable" if snap.health.broker_up else "broker NOT reachable"
        if not snap.ready:
            status = "first poll pending"
        return (
            "<!doctype html><html><head><title>celery-ops-exporter</title></head><body>"
            f"<h1>celery-ops-exporter {html.escape(__version__)}</h1>"
            f"<p>{html.escape(status)}</p><ul>"
            + "".join(f"<li>{link}</li>" for link in links)
            + "</ul></body></html>"
        )

    @app.get("/-/healthy", response_class=PlainTextResponse, include_in_schema=False)
    async def healthy() -> str:
        # The process serves: that is all "healthy" claims (restart me if this fails).
        return "OK\n"

    @app.get("/health", response_class=HTMLResponse, include_in_schema=False)
    async def health() -> str:
        # celery-exporter's probe path (its Helm chart's liveness and readiness): 200 with its
        # body while we serve, from memory only; a down broker shows in celery_exporter_up.
        broker = html.escape(masked_url(state.config.broker_url))
        health = state.snapshot.health
        if health.broker_up:
            return f"Connected to the broker {broker}"
        if health.polls_total == 0:
            return f"Serving; the first poll of the broker {broker} is pending"
        return f"Serving; the last poll did not reach the broker {broker}"

    @app.get("/-/ready", response_class=PlainTextResponse, include_in_schema=False)
    async def ready() -> Response:
        # Ready once a first poll finished (values exist), whether or not the broker is up:
        # an exporter reporting "broker down" is doing its job and should keep being scraped.
        if state.snapshot.health.polls_total == 0:
            return PlainTextResponse("first poll pending\n", status_code=503)
        return PlainTextResponse("OK\n")

    return app


def _add_metrics(app: FastAPI, state: State, registry: CollectorRegistry) -> None:
    refusals = RefusalLog(
        state.attached(ApiCounters), state.clock
    )  # no store: counted and logged only

    async def guard(request: Request) -> None:
        # --metrics-auth: open by default (Prometheus convention), or a token / basic auth.
        try:
            check_metrics_auth(request, state.config)
        except Refused as exc:
            refusals.note(request, exc, audit=False)
            raise

    cfg = state.config
    exposition = Exposition(
        registry,
        state.change_token,
        cfg.metrics_render_interval,
        prefix=cfg.metric_prefix,
        static_labels=cfg.static_labels,
    )

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(guard)])
    async def metrics(request: Request) -> Response:
        # async and I/O-free: served on the event loop from bytes rendered beforehand, so it
        # never queues behind API handlers in the thread pool.
        gzip_ok = "gzip" in request.headers.get("accept-encoding", "")
        body, content_type = exposition.get(request.headers.get("accept", ""), gzip_ok)
        headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzip_ok else None
        return Response(body, media_type=content_type, headers=headers)
