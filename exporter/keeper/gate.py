"""`StartGate`: no live source counts before the keeper has restored the saved ledger state.

So nothing is counted both before a restart and again after it. The keeper opens it (state
loaded, or nothing saved, or no store at all); sources wait on it before counting.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class StartGate:
    """`loaded` is set once the saved ledger state is loaded (or there is none, or loading
    gave up); `reconciled` after the first complete reconcile (or at once without one)."""

    def __init__(self) -> None:
        self.loaded = threading.Event()
        # Saving before the first complete reconcile would write every entry above a
        # still-low watermark in one big transaction; skipping is safe: what it counted is in
        # the backend and counted again on restart.
        self.reconciled = threading.Event()

    def open(self) -> None:
        """Nothing to restore and no reconcile to wait for: count at once."""
        self.loaded.set()
        self.reconciled.set()

    def wait(self, stop: threading.Event, limit: float = 120.0) -> bool:
        """Block until loaded or stopped; after `limit` seconds go on without it (logged)."""
        waited = 0.0
        while not self.loaded.is_set():
            if stop.wait(0.2):
                return False
            waited += 0.2
            if waited >= limit:
                log.error("saved ledger state still not loaded after %.0fs; counting anyway", limit)
                self.loaded.set()
        return True
