"""An outage is logged once at WARNING, its retries at DEBUG, its end at INFO."""

from __future__ import annotations

import logging

import pytest

from exporter.outage import OutageLog


def test_outage_logged_once_then_recovery(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.outage")
    outage = OutageLog(log, "result pub/sub")
    with caplog.at_level(logging.DEBUG, logger="test.outage"):
        outage.ok()  # no outage yet: nothing to say
        for _ in range(5):
            outage.failed(ConnectionError("refused"), 2.0)
        outage.ok()
        outage.failed(ConnectionError("refused"), 0.5)
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    warnings = [m for lvl, m in levels if lvl == "WARNING"]
    assert len(warnings) == 2  # one per outage
    assert "result pub/sub: refused; retrying in 2.0s" in warnings[0]
    assert len([m for lvl, m in levels if lvl == "DEBUG"]) == 4
    assert ("INFO", "result pub/sub: back after 5 failed attempts") in levels
