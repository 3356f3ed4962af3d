"""Beat schedule readers made of plain data, and the golden scenario of beat metrics."""

from __future__ import annotations

from exporter.beat import cron
from exporter.beat.model import BeatEntry, BeatRead, Every, LockState
from exporter.beat.source import BeatSource
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.state import State
from exporter.taskdata import TaskUpdate


class ScriptedReader:
    """Returns the entries and lock the test set; `down` fails like an unreachable store."""

    def __init__(self, source: str = "redbeat") -> None:
        self.source = source
        self.entries: list[BeatEntry] = []
        self.lock: LockState | None = None
        self.total: int | None = None
        self.skipped: dict[str, int] = {}
        self.down = False
        self.closed = 0

    def read(self, now: float, max_entries: int) -> BeatRead:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        return BeatRead(self.source, now, tuple(self.entries[:max_entries]), self.lock,
                        self.total if self.total is not None else len(self.entries),
                        dict(self.skipped))  # fmt: skip

    def close(self) -> None:
        self.closed += 1


def beat_scenario(clock: FakeClock) -> State:
    """RedBeat with a healthy, a failing, a missed and a disabled entry; the lock held."""
    state = State(Config(beat_grace=30.0), clock)
    now = clock.time()
    reader = ScriptedReader()
    reader.lock = LockState(True, 1500.0)
    nightly = cron.parse_expression("0 2 * * *", cron.zone("Europe/Berlin"))
    missed_at = nightly.next_after(now - 86400)  # 02:00 Berlin today: 76,400 s ago
    reader.entries = [
        BeatEntry("ping", "app.ping", Every(60.0), next_due=now + 50, last_run_at=now - 10,
                  total_run_count=100, queue="beat"),
        BeatEntry("report", "app.report", Every(300.0), next_due=now + 200, last_run_at=now - 100),
        BeatEntry("nightly", "app.nightly", nightly, next_due=missed_at,
                  last_run_at=missed_at - 86400),
        BeatEntry("old", "app.old", Every(10.0), enabled=False, next_due=now - 1000),
    ]  # fmt: skip
    reader.total = 5
    reader.skipped = {"bad_json": 1}
    for update in (
        TaskUpdate("p1", "SENT", "events", timestamp=now - 10, name="app.ping"),
        TaskUpdate("p1", "STARTED", "events", timestamp=now - 9),
        TaskUpdate("p1", "SUCCESS", "events", timestamp=now - 8),
        TaskUpdate("r1", "STARTED", "events", timestamp=now - 99, name="app.report"),
        TaskUpdate("r1", "FAILURE", "events", timestamp=now - 98, exception_type="KeyError"),
        TaskUpdate("r0", "SUCCESS", "reconcile", timestamp=now - 700, name="app.report"),
    ):
        state.ledger.apply(update)
    BeatSource(state, reader).run()
    return state
