"""The side API: JSON endpoints (/api/*), the operator page (/ui), auth and remediation glue.

`build_router(state, io)` returns a FastAPI router the HTTP server mounts beside /metrics (or
on --api-listen); `install_error_handlers(app)` makes every error JSON with a message.
"""

from __future__ import annotations

from exporter.api.app import build_router, install_error_handlers
from exporter.api.auth import check_metrics_auth

__all__ = ["build_router", "check_metrics_auth", "install_error_handlers"]
