"""The /ui page: served without a token (it holds no data), with a CSP that pins its one inline
script by hash, no cookies, and values rendered as text."""

from __future__ import annotations

import base64
import hashlib
import re

import fakeredis
from fastapi.testclient import TestClient

from exporter.celery_io import CeleryIO
from tests.support.api import make_app, make_config, new_state


def test_page_is_served_with_a_csp_pinning_its_script() -> None:
    config = make_config()
    client = TestClient(make_app(new_state(config), CeleryIO(config), fakeredis.FakeRedis()))
    resp = client.get("/ui")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in resp.headers
    csp = resp.headers["content-security-policy"]
    scripts = re.findall(r"<script>(.*?)</script>", resp.text, flags=re.S)
    assert len(scripts) == 2 and "/*include" not in resp.text  # browse.js pasted in
    assert "function loadTask(" in scripts[1]
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "innerHTML" not in resp.text  # every value goes in as textContent
    assert "sessionStorage" in resp.text and "document.cookie" not in resp.text
