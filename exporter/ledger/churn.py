"""`Churn`: when to copy a dict that deletes churn, so its table is sized for what it holds.

Deletes leave dead slots in a dict's table that only a resize reclaims, and a resize of a
first-in first-out dict allocates for three times what it holds: the ledger's 200,000
entries had 15.4 MB of table where a copy needs 7.7 MB (bench/ledger_memory.py --parts).
So each dict the ledger churns (its entries, the label-grace store, the evicted ids) is
copied once `every` deletes have happened since its last copy. Nothing here locks: the
ledger calls it under its own lock.
"""

from __future__ import annotations


class Churn:
    __slots__ = ("every", "since")

    def __init__(self, every: int) -> None:
        self.every = max(1, every)
        self.since = 0  # deletes since the dict was last copied

    def deleted(self, n: int = 1) -> bool:
        """Count `n` deletes; True when the dict is due for its copy (counting starts over)."""
        self.since += n
        if self.since < self.every:
            return False
        self.since = 0
        return True
