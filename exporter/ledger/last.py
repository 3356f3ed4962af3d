"""The last time each task name was sent, received, started, succeeded and failed.

Beat monitoring joins schedule entries with these. Keyed by the name label the ledger's name
guard admitted (names past --max-task-names share "other"), so it is bounded like the
counters. Saved and restored with the ledger's durable state (durable.py), so beat
monitoring knows the last runs across a restart. The ledger calls these under its own lock;
nothing here locks.
"""

from __future__ import annotations

from exporter.taskdata import FAILURE, RECEIVED, SENT, STARTED, SUCCESS

TRACKED = (SENT, RECEIVED, STARTED, SUCCESS, FAILURE)
_SLOT = {state: i for i, state in enumerate(TRACKED)}


class LastTimes:
    __slots__ = ("_by_name",)

    def __init__(self) -> None:
        self._by_name: dict[str, list[float | None]] = {}

    def note(self, name: str, state: str, when: float) -> None:
        slot = _SLOT.get(state)
        if slot is None:
            return
        times = self._by_name.get(name)
        if times is None:
            times = self._by_name[name] = [None] * len(TRACKED)
        current = times[slot]
        if current is None or when > current:
            times[slot] = when

    def rows(self) -> list[list[object]]:
        """[name, [time or None per TRACKED state]] per name, for saved state."""
        return [[name, list(times)] for name, times in self._by_name.items()]

    def restore(self, name: str, times: list[float | None]) -> None:
        """Merge saved times (one per TRACKED state, None: never) for a name: newest wins."""
        for state, when in zip(TRACKED, times, strict=False):
            if when is not None:
                self.note(name, state, when)

    def copy(self) -> dict[str, dict[str, float]]:
        """name -> {state: last time} for the states seen."""
        return {
            name: {TRACKED[i]: t for i, t in enumerate(times) if t is not None}
            for name, times in self._by_name.items()
        }
