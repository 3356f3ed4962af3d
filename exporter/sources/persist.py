"""Keeps the ledger's saved state fresh: a save every SAVE_INTERVAL seconds and one on stop.

The load at start is done by the reconcile source (it must finish before the first reconcile);
this one only writes. See ledger_store.py for what is saved and why it stays exact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from exporter.ledger_store import LedgerStore
from exporter.outage import OutageLog
from exporter.sources.base import Boot, SourceStats
from exporter.state import State

log = logging.getLogger(__name__)
SAVE_INTERVAL = 10.0


class PersistSource:
    name = "persist"

    def __init__(self, state: State, store: LedgerStore, boot: Boot) -> None:
        self.state = state
        self.store = store
        self._boot = boot
        self.stats = SourceStats(state, self.name)
        self._outage = OutageLog(log, "saving ledger state")  # once per outage, not per save

    def start(self) -> None:
        return None

    def stop(self) -> None:
        self.save()

    def jobs(self) -> list[tuple[Callable[[], None], float, str]]:
        return [(self.save, SAVE_INTERVAL, "ledger-save")]

    def save(self) -> None:
        # Saving before the old state is loaded would overwrite it with a near-empty ledger.
        if not (self._boot.loaded.is_set() and self._boot.reconciled.is_set()):
            return
        try:
            self.store.save(self.state.ledger)
            self.stats.add("saves")
            self.stats.publish(up=True, message_at=self.state.clock.time())
            self._outage.ok()
        except Exception as exc:  # retried next interval, with a full rewrite
            self._outage.failed(exc, SAVE_INTERVAL)
            self.stats.publish(up=False, error=f"{type(exc).__name__}: {exc}")
