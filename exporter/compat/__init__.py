"""`--compat danihodovic`: danihodovic/celery-exporter's metric families, counted its way.

A pipeline stage beside the ledger, which it never reads or changes: the events source hands
it every decoded task event (`CompatCounts.observe_many`), and it counts each delivery as
celery-exporter does (a retried task counts sent, received and started again), with its
label names and histograms. `collectors/compat.py` renders it, plus worker and queue gauges
from the snapshot. `counts_for(state)` gives the one `CompatCounts` of a daemon's state, or
None in the default mode (no change to `State` needed).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exporter.compat.counts import CompatCounts
    from exporter.state import State

DANIHODOVIC = "danihodovic"  # one of config_checks.COMPAT_MODES

_COUNTS: weakref.WeakKeyDictionary[State, CompatCounts] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def enabled(state: State) -> bool:
    return state.config.compat == DANIHODOVIC


def counts_for(state: State) -> CompatCounts | None:
    """The compat counts of this state (made on first use), or None when compat is off."""
    if not enabled(state):
        return None
    from exporter.compat.counts import CompatCounts

    with _LOCK:
        counts = _COUNTS.get(state)
        if counts is None:
            counts = _COUNTS[state] = CompatCounts(state.config)
            state.watch_changes(lambda: counts.version)
        return counts
