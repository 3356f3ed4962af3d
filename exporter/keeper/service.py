"""`Keeper`: owns the ledger's saved state. Loads it before any source counts, then saves.

At start its thread loads the saved state from the store (retrying with a backoff while
Redis is down) and opens the start gate; after that it saves every SAVE_INTERVAL seconds
when the ledger changed (the daemon's scheduler runs `save_if_changed`), after each complete
reconcile, and once on stop. It
is a service beside the task sources, not one of them: it hears no tasks, so it is not in
task source health; its own health is `KeeperHealth` in State (saves, failures, last
error). What is saved and why it stays exact: store.py and ledger/durable.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from exporter.background import Background
from exporter.keeper.gate import StartGate
from exporter.keeper.store import LedgerStore
from exporter.outage import Backoff, OutageLog
from exporter.state import KeeperHealth, State

log = logging.getLogger(__name__)
SAVE_INTERVAL = 10.0
# Saving an unchanged ledger every 10 s cost an idle exporter ~0.06 ms/s (a Redis transaction,
# and a KeeperHealth update that also moved the /metrics change token): a periodic save is
# skipped while the ledger's write counter and reconcile pass position are where the last
# save found them. It saves anyway once the last save is this old: every save renews the
# keys' TTL (store.STATE_TTL), and a held count whose label grace ran out in a read (those
# reads apply it without a write) reaches the store then at the latest (until then the store
# holds it with its entry, consistent with the saved counters: it is applied once either way).
RESAVE_AFTER = 600.0


class Keeper:
    name = "keeper"
    BACKOFF = (1.0, 30.0)  # seconds between load attempts: first, cap (tests shorten it)

    def __init__(self, state: State, store: LedgerStore, gate: StartGate) -> None:
        self.state = state
        self.store = store
        self.gate = gate
        self._bg = Background("keeper", self._load, join_timeout=15)
        self._lock = threading.Lock()  # saves and the health they report, one at a time
        self._saves = 0
        self._failures = 0
        self._last_save_at: float | None = None
        # What the last good save saw (None: save next time) and when (clock.monotonic()).
        self._saved_token: tuple[object, ...] | None = None
        self._saved_mono = 0.0
        # An unreachable backend is logged once per outage, not on every retry.
        self._load_outage = OutageLog(log, "loading saved ledger state")
        self._save_outage = OutageLog(log, "saving ledger state")
        state.set_keeper_health(KeeperHealth(enabled=True))

    def start(self) -> None:
        self._bg.start()

    def stop(self) -> None:
        """Stop loading (if still trying) and save once more."""
        self._bg.stop()
        self.save()

    def jobs(self) -> list[tuple[Callable[[], None], float, str]]:
        return [(self.save_if_changed, SAVE_INTERVAL, "ledger-save")]

    def _load(self) -> None:
        """Load the saved ledger, then open the gate (retried until stopped or given up)."""
        self._bg.retry(
            self._load_once,
            self._load_outage,
            Backoff(*self.BACKOFF),
            until=self.gate.loaded.is_set,  # loaded, or the gate gave up waiting
            on_failure=self._load_failed,
        )

    def _load_once(self) -> None:
        self.store.load(self.state.ledger)
        self.gate.loaded.set()

    def _load_failed(self, exc: Exception) -> None:  # Redis down at start: retried
        with self._lock:
            self._report(ok=False, error=f"load: {type(exc).__name__}: {exc}")

    def save(self) -> None:
        """Save the changes since the last save; failures are logged once per outage and
        retried at the next save, which then rewrites everything."""
        self._save(only_if_changed=False)

    def save_if_changed(self) -> None:
        """The periodic save: skipped while nothing was written (see RESAVE_AFTER)."""
        self._save(only_if_changed=True)

    def _token(self) -> tuple[object, ...]:
        ledger = self.state.ledger
        return (ledger.changes, ledger.pass_position)

    def _save(self, only_if_changed: bool) -> None:
        # Saving before the old state is loaded would overwrite it with a near-empty ledger.
        if not (self.gate.loaded.is_set() and self.gate.reconciled.is_set()):
            return
        with self._lock:
            # Read before the export: a write landing after it moves the token for next time.
            token, now = self._token(), self.state.clock.monotonic()
            if (
                only_if_changed
                and token == self._saved_token
                and now - self._saved_mono < RESAVE_AFTER
            ):
                return
            try:
                self.store.save(self.state.ledger)
                self._save_outage.ok()
                self._saved_token, self._saved_mono = token, now
                self._report(ok=True)
            except Exception as exc:
                self._saved_token = None
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
