"""The keeper: owner of the ledger's saved state (load at start, save on a period and on stop).

- gate.py: `StartGate`, which keeps live sources from counting before the load
- store.py: `LedgerStore`, the Redis I/O (keys, one transaction per save)
- service.py: `Keeper`, the service the daemon starts beside the task sources

`build_keeper` makes the keeper and its gate from the config: without a Redis result
backend there is nothing to save to, no keeper, and the gate is open from the start.
"""

from __future__ import annotations

import logging

from exporter.backend_redis import backend_client
from exporter.keeper.gate import StartGate
from exporter.keeper.service import SAVE_INTERVAL, Keeper
from exporter.keeper.store import LedgerStore
from exporter.state import State

__all__ = ["SAVE_INTERVAL", "Keeper", "LedgerStore", "StartGate", "build_keeper"]
log = logging.getLogger(__name__)


def build_keeper(state: State) -> tuple[Keeper | None, StartGate]:
    config = state.config
    gate = StartGate()
    if config.backend_url is None:
        gate.open()  # nothing to restore from: live sources may count at once
        log.warning(
            "no Redis result backend: task counts come from events only and restart "
            "from zero when the exporter restarts"
        )
        return None, gate
    store = LedgerStore(backend_client(config), config.global_keyprefix, config.instance_id)
    return Keeper(state, store, gate), gate
