"""Plain replies from the cluster, as `celery_io` hands them to the poller (no Celery types).

`ClusterReader` is what the poller needs from the outside world; `celery_io.CeleryReader`
implements it against a real broker and tests implement it with plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class InspectReply:
    """Replies per inspect method: hostname -> reply. A method nobody answered is absent."""

    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    # methods to which no worker answered within the timeout
    unanswered: tuple[str, ...] = ()

    def get(self, method: str) -> dict[str, Any] | None:
        return self.replies.get(method)


@dataclass(frozen=True)
class QueueHead:
    """The next message a consumer would take from one (priority sub-)queue."""

    task_id: str | None
    delivery_tag: str | None


@dataclass(frozen=True)
class QueueDepth:
    name: str
    length: int | None  # None: could not be read (e.g. RabbitMQ 404 is 0, an error is None)
    consumers: int | None = None  # known on RabbitMQ; None on Redis
    heads: tuple[QueueHead, ...] = ()


@dataclass(frozen=True)
class DepthReply:
    queues: dict[str, QueueDepth] = field(default_factory=dict)
    unacked: int | None = None  # Redis only


class BrokerUnavailable(Exception):
    """The broker could not be reached; the message says how, in one line."""


class ClusterReader(Protocol):
    def inspect(self, timeout: float, expected: int | None = None) -> InspectReply:
        """Broadcast stats/active_queues/active/reserved/scheduled; raise BrokerUnavailable.

        `expected`: stop waiting once that many workers answered; None waits the timeout.
        """

    def depths(self, queues: list[str]) -> DepthReply:
        """Queue depth, consumers and heads; raise BrokerUnavailable."""

    def close(self) -> None:
        """Drop connections (the next call reconnects)."""
