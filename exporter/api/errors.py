"""How the API answers: every error as JSON with a `message` (`install_error_handlers`), the
error responses listed in the schema (`ERRORS`), and the route class that counts each request
in celery_exporter_api_requests_total{endpoint,code}."""

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from exporter.api.models import ErrorOut
from exporter.apicounters import ApiCounters

log = logging.getLogger(__name__)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 410, 422, 503)
}


def validation_status(exc: RequestValidationError) -> int:
    """400 for a malformed paging cursor (a client mistake about our own token), else 422."""
    locs = [tuple(e.get("loc", ())) for e in exc.errors()]
    return 400 if locs and all(loc == ("query", "cursor") for loc in locs) else 422


class CountingRoute(APIRoute):
    """Counts every request in celery_exporter_api_requests_total{endpoint,code}."""

    stats: ApiCounters

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        endpoint, stats = self.path, self.stats

        async def counted(request: Request) -> Response:
            try:
                response = await handler(request)
            except StarletteHTTPException as exc:
                stats.request(endpoint, exc.status_code)
                raise
            except RequestValidationError as exc:
                stats.request(endpoint, validation_status(exc))
                raise
            except Exception:
                stats.request(endpoint, 500)
                raise
            stats.request(endpoint, response.status_code)
            return response

        return counted


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
        status = validation_status(exc)
        if status == 400:
            message = "cursor is not one this API gave: pass a page's next_cursor unchanged"
        return JSONResponse({"message": message, "detail": errors}, status)

    @app.exception_handler(Exception)
    async def crashed(_r: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in the API")
        return JSONResponse({"message": "internal error; the exporter log has details"}, 500)
