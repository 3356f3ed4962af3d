"""When the pub/sub read loop lingers after a wake-up: while messages flow, not for a lone
message after a quiet spell (an idle worker's heartbeat), never after a full batch; and when
it dozes: after a batch of worker heartbeats only."""

from __future__ import annotations

from typing import Any

from exporter.celery_io.redis_events import heartbeats_only
from exporter.pubsub_batch import DOZE, LINGER_AFTER, Message, read_batches

HEARTBEAT = b"/0.celeryev/worker.heartbeat"
TASK = b"/0.celeryev/task.succeeded"


class _Timed:
    """A subscribed connection whose messages arrive at given times of a fake clock; each
    wait jumps the clock to the next arrival. Stops after the last one is read."""

    def __init__(self, arrivals: list[float], channels: dict[float, bytes] | None = None) -> None:
        self.now = 0.0
        self.arrivals = sorted(arrivals)
        self.channels = channels or {}

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def _due(self) -> int:
        return sum(1 for t in self.arrivals if t <= self.now)

    def can_read(self, timeout: float = 0) -> bool:
        if not self._due() and timeout and self.arrivals:
            self.now = max(self.now, min(self.arrivals))  # asleep until the next message
        return self._due() > 0

    def read_response(self, push_request: bool = False) -> list[bytes]:
        first = min(t for t in self.arrivals if t <= self.now)
        self.arrivals.remove(first)
        return [b"pmessage", b"*", self.channels.get(first, b"ch"), b"m"]


def _run(
    arrivals: list[float], channels: dict[float, bytes] | None = None
) -> tuple[list[float], list[int]]:
    """(when the loop slept, batch sizes); heartbeats-only batches doze."""
    conn = _Timed(arrivals, channels)
    lingers: list[float] = []
    batches: list[int] = []

    def sleep(seconds: float) -> None:
        lingers.append(conn.now)
        conn.sleep(seconds)

    def handle(batch: list[Message]) -> Any:
        batches.append(len(batch))

    read_batches(
        conn,
        lambda: not conn.arrivals,
        handle,
        sleep=sleep,
        monotonic=conn.monotonic,
        quiet=heartbeats_only,
    )
    return lingers, batches


def test_a_lone_message_after_a_quiet_spell_is_read_at_once() -> None:
    heartbeats = [2.0 * i for i in range(1, 6)]  # one worker, idle: every 2 s
    lingers, batches = _run(heartbeats)
    assert lingers == [] and batches == [1] * 5


def test_a_flowing_stream_lingers_after_its_first_message() -> None:
    # A burst after a quiet spell: the first message alone, then the rest gathered.
    burst = [5.0, 5.01, 5.05, 5.1, 5.15]
    lingers, batches = _run(burst)
    assert batches == [1, 4] and lingers == [5.01]
    # Messages closer together than LINGER_AFTER keep the loop lingering.
    steady = [5.0 + i * LINGER_AFTER / 2 for i in range(6)]
    lingers, batches = _run(steady)
    assert len(lingers) == 5 and batches == [1] * 6  # each LINGER ends before the next


def test_heartbeats_alone_are_read_a_doze_apart() -> None:
    """An idle cluster: one wake-up reads two heartbeats (every 2 s), not one; a task event
    after heartbeats is read after the doze at most, and a batch with one is no doze."""
    beats = [2.0 * i for i in range(1, 11)]
    sleeps, batches = _run(beats, dict.fromkeys(beats, HEARTBEAT))
    assert batches == [1, 2, 2, 2, 2, 1]  # 20 s of heartbeats in six wake-ups, not ten
    assert sleeps == [2.0, 6.0, 10.0, 14.0, 18.0, 22.0]  # each a DOZE, after a batch
    assert DOZE == 4.0  # the figures above are for it
    channels = {2.0: HEARTBEAT, 3.0: TASK, 4.0: HEARTBEAT, 9.0: TASK}
    sleeps, batches = _run(list(channels), channels)
    assert batches == [1, 2, 1]  # the task event at 3 s waited for the doze (to 6 s)
    assert sleeps == [2.0]  # the batch of 6 s held a task event: no doze after it


def test_stopping_ends_a_doze_at_once() -> None:
    from exporter.pubsub_batch import Waker, _doze

    waker = Waker()
    waker.set()  # the source stops: the pipe is readable, so the hour-long doze returns
    _doze(waker, 3600.0)
