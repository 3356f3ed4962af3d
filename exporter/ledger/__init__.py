"""The task ledger: every source's `TaskUpdate` becomes counts, histograms and records.

What others use is exported here; the modules inside are the ledger's own:

- ledger.py: `Ledger`, the lock and public face; tables.py: `LedgerTables`, every mutable
  table as a plain field the ledger owns under its lock
- fold.py: de-duplication, counting, eviction; attribution.py: which name and queue an
  effect is counted under (held for a grace while unknown, pending.py)
- reads.py: copies for collectors and the API; counts.py: `LedgerCounts`, that copy
- durable.py: saved state encoded from and decoded into the tables
- entry.py: one task id's compact memory; packed.py: settled, cold entries as one bytes
  record each (every reader of an entry goes through it); evicted.py: ids forgotten while
  a reconcile could count them again; last.py: last run times per task name
- guard.py: label bounds; histograms.py: runtime and queue-wait histograms;
  window.py: the success-ratio window; hosts.py: outcomes per worker node, kept only for
  `--compat danihodovic`; churn.py: when a churned dict is copied to its live size

The package imports nothing from sources, collectors or the API.
"""

from exporter.ledger.counts import LedgerCounts
from exporter.ledger.guard import OTHER, UNKNOWN
from exporter.ledger.histograms import HistogramData
from exporter.ledger.ledger import RECONCILE_MARGIN, Ledger

__all__ = ["OTHER", "RECONCILE_MARGIN", "UNKNOWN", "HistogramData", "Ledger", "LedgerCounts"]
