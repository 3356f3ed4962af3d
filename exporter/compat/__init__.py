"""`--compat danihodovic`: danihodovic/celery-exporter's metric families, from our own counts.

Two inputs, joined per render (view.py): deliveries, counted from every task-sent, -received
and -started event as celery-exporter does (a retried task counts again: counts.py, fed by
the events source), and the ledger's exact outcomes and runtimes per worker node
(ledger/hosts.py, kept by the ledger when this mode is on). `collectors/compat.py` renders
the view, plus worker and queue gauges from the snapshot. `counts_for(state)` gives the one
`CompatCounts` of a daemon's state, or None in the default mode (attached to the `State`,
like the API counters); `view_for(state)` the joined view.
"""

from __future__ import annotations

from exporter.compat.counts import CompatCounts
from exporter.compat.view import CompatView, join
from exporter.config_checks import DANIHODOVIC
from exporter.state import State


def enabled(state: State) -> bool:
    return state.config.compat == DANIHODOVIC


def counts_for(state: State) -> CompatCounts | None:
    """The compat counts of this state (made on first use), or None when compat is off."""
    if not enabled(state):
        return None
    return state.attached(CompatCounts, lambda: CompatCounts(state.config))


def view_for(state: State) -> CompatView | None:
    """What compat mode renders now, or None when it is off."""
    counts = counts_for(state)
    if counts is None:
        return None
    generic = state.config.generic_hostname_worker_task_metric
    return join(counts.view(), state.ledger.host_counts(), generic)


__all__ = ["DANIHODOVIC", "CompatCounts", "CompatView", "counts_for", "enabled", "view_for"]
