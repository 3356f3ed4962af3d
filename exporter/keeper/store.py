"""The keeper's Redis I/O: saves and restores the ledger's durable state under its own keys.

Keys (all behind the backend's `global_keyprefix`):
  `<prefix>celery-ops-exporter:<instance>:ledger` - JSON: counters, histograms, watermark
  `<prefix>celery-ops-exporter:<instance>:seen`   - hash: task id -> dedup bits of entries
                                                   above the watermark or unfinished
A save writes only what changed since the last one, in one MULTI/EXEC transaction, so the
stored counters always match the stored dedup state. After a crash the newest save wins and
whatever was counted after it is counted again by the start-up reconcile (ready states in the
backend) or is lost (event-only states), never counted twice.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from exporter.ledger import Ledger

log = logging.getLogger(__name__)
# Saved state of an instance that stopped for good (e.g. a pod name that never returns)
# expires instead of staying in Redis forever; every save renews it.
STATE_TTL = 7 * 86_400


class LedgerStore:
    def __init__(self, client: Any, prefix: str, instance: str) -> None:
        self._client = client
        base = f"{prefix}celery-ops-exporter:{instance}"
        self.counters_key = f"{base}:ledger"
        self.seen_key = f"{base}:seen"
        self.saves = 0
        self.errors = 0
        # One save at a time: two interleaved saves could store older counters over newer
        # dedup entries (the periodic job and the final save on shutdown may overlap).
        self._save_lock = threading.Lock()

    def load(self, ledger: Ledger, batch: int = 1000) -> bool:
        """Restore the ledger; False when nothing was saved (first start) or it is unreadable."""
        raw = self._client.get(self.counters_key)
        if raw is None:
            return False
        try:
            counters = json.loads(raw)  # not orjson: older saves may hold escaped surrogates
        except (ValueError, RecursionError):
            log.error("saved ledger state at %s is not JSON; starting from zero", self.counters_key)
            self.errors += 1
            return False
        seen: dict[str, str] = {}
        for key, value in self._client.hscan_iter(self.seen_key, count=batch):
            seen[_text(key)] = _text(value)
        ledger.import_state({"counters": counters, "seen": seen})
        log.info(
            "restored ledger counters and %d dedup entries from %s", len(seen), self.counters_key
        )
        return True

    def save(self, ledger: Ledger) -> None:
        """Write the changes since the last save; on failure the next save rewrites all."""
        with self._save_lock:
            self._save(ledger)

    def _save(self, ledger: Ledger) -> None:
        state = ledger.export_state()
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self.counters_key, json.dumps(state["counters"], separators=(",", ":")))
            items = list(state["seen"].items())
            for start in range(0, len(items), 5000):
                pipe.hset(self.seen_key, mapping=dict(items[start : start + 5000]))
            drop = state["drop"]
            for start in range(0, len(drop), 5000):
                pipe.hdel(self.seen_key, *drop[start : start + 5000])
            pipe.expire(self.counters_key, STATE_TTL)
            pipe.expire(self.seen_key, STATE_TTL)
            pipe.execute()
            self.saves += 1
        except Exception:
            self.errors += 1
            ledger.mark_unsaved()
            raise


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
