"""`--compat danihodovic`: danihodovic/celery-exporter's metric families, counted its way.

A pipeline stage beside the ledger, which it never reads or changes: the events source hands
it every decoded task event (`CompatCounts.observe_many`), and it counts each delivery as
celery-exporter does (a retried task counts sent, received and started again), with its
label names and histograms. `collectors/compat.py` renders it, plus worker and queue gauges
from the snapshot. `counts_for(state)` gives the one `CompatCounts` of a daemon's state, or
None in the default mode (attached to the `State`, like the API counters).
"""

from __future__ import annotations

from exporter.compat.counts import CompatCounts
from exporter.state import State

DANIHODOVIC = "danihodovic"  # one of config_checks.COMPAT_MODES


def enabled(state: State) -> bool:
    return state.config.compat == DANIHODOVIC


def counts_for(state: State) -> CompatCounts | None:
    """The compat counts of this state (made on first use), or None when compat is off."""
    if not enabled(state):
        return None
    return state.attached(CompatCounts, lambda: CompatCounts(state.config))
