"""When the pub/sub read loop lingers after a wake-up: while messages flow, not for a lone
message after a quiet spell (an idle worker's heartbeat), never after a full batch."""

from __future__ import annotations

from typing import Any

from exporter.pubsub_batch import LINGER_AFTER, Message, read_batches


class _Timed:
    """A subscribed connection whose messages arrive at given times of a fake clock; each
    wait jumps the clock to the next arrival. Stops after the last one is read."""

    def __init__(self, arrivals: list[float]) -> None:
        self.now = 0.0
        self.arrivals = sorted(arrivals)

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
        self.arrivals.remove(min(t for t in self.arrivals if t <= self.now))
        return [b"pmessage", b"*", b"ch", b"m"]


def _run(arrivals: list[float]) -> tuple[list[float], list[int]]:
    conn = _Timed(arrivals)
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
