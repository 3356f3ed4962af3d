"""The side API: JSON endpoints (/api/*), the operator page (/ui), auth and remediation glue.

`build_router(state, io)` (router.py) returns a FastAPI router that the app factory,
`exporter.http.create_app`, mounts beside /metrics (or on --api-listen);
`install_error_handlers(app)` makes every error JSON with a message.
"""

from __future__ import annotations

from exporter.api.auth import check_metrics_auth
from exporter.api.router import build_router, install_error_handlers

__all__ = ["build_router", "check_metrics_auth", "install_error_handlers"]
