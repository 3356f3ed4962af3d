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


class _DownStore:
    """A ledger store whose Redis refuses `failures` loads, then loads nothing."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def load(self, _ledger: object) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")
        return False


def test_unreachable_backend_is_logged_once_not_per_load_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from exporter.clock import FakeClock
    from exporter.config import Config
    from exporter.keeper import Keeper, StartGate
    from exporter.state import State
    from tests.support.common import wait_for

    state = State(Config(broker_url="memory://", result_backend=""), FakeClock())
    store = _DownStore(failures=5)
    boot = StartGate()
    source = Keeper(state, store, boot)  # type: ignore[arg-type]
    source.BACKOFF = (0.001, 0.001)  # the retries themselves are not what is tested
    with caplog.at_level(logging.DEBUG, logger="exporter.keeper.service"):
        source.start()
        try:
            wait_for(boot.loaded.is_set, 10, what="saved state loaded")
        finally:
            source.stop()
    assert store.calls == 6
    lines = [
        (r.levelname, r.getMessage()) for r in caplog.records if "ledger state" in r.getMessage()
    ]
    warnings = [m for lvl, m in lines if lvl == "WARNING"]
    assert len(warnings) == 1 and "Connection refused" in warnings[0], lines
    assert ("INFO", "loading saved ledger state: back after 5 failed attempts") in lines
