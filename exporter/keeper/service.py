"""`Keeper`: owns the ledger's saved state. Loads it before any source counts, then saves.

At start its thread loads the saved state from the store (retrying with a backoff while
Redis is down) and opens the start gate; after that it saves every SAVE_INTERVAL seconds
(the daemon's scheduler runs `save`), after each complete reconcile, and once on stop. It
is a service beside the task sources, not one of them: it hears no tasks, so it is not in
task source health; its own health is `KeeperHealth` in State (saves, failures, last
error). What is saved and why it stays exact: store.py and ledger/durable.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from exporter.keeper.gate import StartGate
from exporter.keeper.store import LedgerStore
from exporter.outage import Backoff, OutageLog
from exporter.state import KeeperHealth, State

log = logging.getLogger(__name__)
SAVE_INTERVAL = 10.0


class Keeper:
    name = "keeper"
    BACKOFF = (1.0, 30.0)  # seconds between load attempts: first, cap (tests shorten it)

    def __init__(self, state: State, store: LedgerStore, gate: StartGate) -> None:
        self.state = state
        self.store = store
        self.gate = gate
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # saves and the health they report, one at a time
        self._saves = 0
        self._failures = 0
        self._last_save_at: float | None = None
        # An unreachable backend is logged once per outage, not on every retry.
        self._load_outage = OutageLog(log, "loading saved ledger state")
        self._save_outage = OutageLog(log, "saving ledger state")
        state.set_keeper_health(KeeperHealth(enabled=True))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name="keeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop loading (if still trying) and save once more."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None
        self.save()

    def jobs(self) -> list[tuple[Callable[[], None], float, str]]:
        return [(self.save, SAVE_INTERVAL, "ledger-save")]

    def _load(self) -> None:
        """Load the saved ledger, then open the gate (retried until stopped or given up)."""
        backoff = Backoff(*self.BACKOFF)
        while not self._stop.is_set() and not self.gate.loaded.is_set():
            try:
                self.store.load(self.state.ledger)
                self.gate.loaded.set()
                self._load_outage.ok()
            except Exception as exc:  # Redis down at start: retry, then give up (the gate)
                delay = backoff.next()
                self._load_outage.failed(exc, delay)
                with self._lock:
                    self._report(ok=False, error=f"load: {type(exc).__name__}: {exc}")
                self._stop.wait(delay)

    def save(self) -> None:
        """Save the changes since the last save; failures are logged once per outage and
        retried at the next save, which then rewrites everything."""
        # Saving before the old state is loaded would overwrite it with a near-empty ledger.
        if not (self.gate.loaded.is_set() and self.gate.reconciled.is_set()):
            return
        with self._lock:
            try:
                self.store.save(self.state.ledger)
                self._save_outage.ok()
                self._report(ok=True)
            except Exception as exc:
                self._save_outage.failed(exc, SAVE_INTERVAL)
                self._report(ok=False, error=f"{type(exc).__name__}: {exc}")

    def _report(self, ok: bool, error: str | None = None) -> None:
        if ok:
            self._saves += 1
            self._last_save_at = self.state.clock.time()
        else:
            self._failures += 1
        self.state.set_keeper_health(
            KeeperHealth(
                enabled=True,
                ok=ok,
                saves=self._saves,
                failures=self._failures,
                last_save_at=self._last_save_at,
                last_error=error,
            )
        )
