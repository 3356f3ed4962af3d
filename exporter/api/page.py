"""The operator page at /ui: one server-rendered HTML file with a little vanilla JS.

The page itself holds no data and needs no auth (its views: situation, task browser, task
detail, trends, periodic tasks, switched by the URL's #fragment; templates/browse.js is pasted
into it); its scripts call the JSON API with the token the operator typed, kept in
sessionStorage and sent as an `Authorization` header. No cookie is ever set, so a forged
cross-site request carries no credentials: the page is CSRF-safe by construction. The strict
Content-Security-Policy allows only this page's own inline scripts, each pinned by its hash.

`/api/docs` is served the same way: a small page of our own that reads `/api/openapi.json` and
lists every endpoint, instead of FastAPI's Swagger UI, which loads its script and styles from a
CDN (a blank page on an air-gapped site, and a third-party script on the operator's origin).
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse


@lru_cache(maxsize=2)
def _page(name: str = "ui.html") -> tuple[str, str]:
    files = resources.files("exporter.api").joinpath("templates")
    html = files.joinpath(name).read_text("utf-8")
    # /*include x.js*/ pastes templates/x.js in (before hashing): one page, no build step.
    html = re.sub(
        r"/\*include ([a-z_]+\.js)\*/", lambda m: files.joinpath(m[1]).read_text("utf-8"), html
    )
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    hashes = " ".join("'sha256-" + _b64(hashlib.sha256(s.encode()).digest()) + "'" for s in scripts)
    csp = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return html, csp


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _serve(name: str) -> HTMLResponse:
    html, csp = _page(name)
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


def add_routes(router: APIRouter) -> None:
    # async: the templates are read once and cached; no pool thread is needed.
    @router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
    async def ui() -> HTMLResponse:
        return _serve("ui.html")

    @router.get("/api/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return _serve("docs.html")
