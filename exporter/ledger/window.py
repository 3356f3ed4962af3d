"""`OutcomeWindow`: successes and failures per second and name, for the success ratio.

Kept only for the last `window` seconds (--success-window). The ledger calls it under its
own lock; nothing here locks.
"""

from __future__ import annotations

from collections import deque


class OutcomeWindow:
    """Successes and failures per second and task name, kept only for the last `window` s."""

    def __init__(self, window: float) -> None:
        self.window = window
        # [second, {name: [succeeded, failed]}], oldest first
        self._slots: deque[tuple[int, dict[str, list[int]]]] = deque()

    def add(self, now: float, name: str, ok: bool) -> None:
        second = int(now)
        if not self._slots or self._slots[-1][0] != second:
            # A clock that steps back writes into the newest slot rather than reordering.
            if self._slots and self._slots[-1][0] > second:
                second = self._slots[-1][0]
            else:
                self._slots.append((second, {}))
        slot = self._slots[-1][1].setdefault(name, [0, 0])
        slot[0 if ok else 1] += 1
        self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        while self._slots and self._slots[0][0] < horizon:
            self._slots.popleft()

    def totals(self, now: float, window: float) -> dict[str, tuple[int, int]]:
        horizon = now - window
        out: dict[str, list[int]] = {}
        for second, names in self._slots:
            if second < horizon:
                continue
            for name, (ok, bad) in names.items():
                for key in (name, ""):
                    acc = out.setdefault(key, [0, 0])
                    acc[0] += ok
                    acc[1] += bad
        return {k: (v[0], v[1]) for k, v in out.items()}
