"""A `ClusterReader` made of plain data, for unit tests of the poller and collectors."""

from __future__ import annotations

from typing import Any

from exporter.cluster import BrokerUnavailable, DepthReply, InspectReply, QueueDepth, QueueHead


class FakeReader:
    """Answers with whatever the test set; `down` makes every call fail like a dead broker."""

    def __init__(self) -> None:
        self.replies: dict[str, dict[str, Any]] = {}
        self.depth: dict[str, QueueDepth] = {}
        self.unacked: int | None = 0
        self.down = False
        self.calls = 0
        self.expected: list[int | None] = []
        self.closed = 0

    def inspect(self, timeout: float, expected: int | None = None) -> InspectReply:
        self.calls += 1
        self.expected.append(expected)
        if self.down:
            raise BrokerUnavailable("ConnectionRefusedError: [Errno 111] Connection refused")
        methods = ("stats", "active_queues", "active", "reserved", "scheduled")
        unanswered = tuple(m for m in methods if not self.replies.get(m))
        return InspectReply(
            replies={m: dict(r) for m, r in self.replies.items() if r}, unanswered=unanswered
        )

    def depths(self, queues: list[str]) -> DepthReply:
        if self.down:
            raise BrokerUnavailable("ConnectionRefusedError: [Errno 111] Connection refused")
        return DepthReply(
            queues={q: self.depth.get(q, QueueDepth(q, 0)) for q in queues}, unacked=self.unacked
        )

    def close(self) -> None:
        self.closed += 1

    # -- building a cluster ------------------------------------------------------------------
    def add_worker(
        self,
        host: str,
        queues: tuple[str, ...] = ("celery",),
        active: list[dict[str, Any]] | None = None,
        reserved: int = 0,
        scheduled: int = 0,
        concurrency: int = 4,
        processed: dict[str, int] | None = None,
    ) -> None:
        r = self.replies
        r.setdefault("stats", {})[host] = {
            "pool": {"max-concurrency": concurrency, "processes": list(range(concurrency))},
            "total": processed or {},
        }
        r.setdefault("active_queues", {})[host] = [{"name": q} for q in queues]
        r.setdefault("active", {})[host] = active or []
        r.setdefault("reserved", {})[host] = [{"id": f"r{i}"} for i in range(reserved)]
        r.setdefault("scheduled", {})[host] = [{"eta": None} for _ in range(scheduled)]

    def remove_worker(self, host: str) -> None:
        for reply in self.replies.values():
            reply.pop(host, None)

    def set_queue(
        self, name: str, length: int, heads: tuple[str, ...] = (), consumers: int | None = None
    ) -> None:
        self.depth[name] = QueueDepth(
            name, length, consumers, tuple(QueueHead(h, f"tag-{h}") for h in heads)
        )
