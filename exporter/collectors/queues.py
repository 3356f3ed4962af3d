"""Collector `queues`: backlog per queue, read from the broker by the last poll."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.state import State

OLDEST_HELP = (
    "Seconds the oldest message at the head of the queue (any priority) has waited. Taken from "
    "the task-sent event when producers send them (task_send_sent_event), otherwise counted "
    "from when the exporter first saw that message at the head: a lower bound. 0 when empty."
)


class QueuesCollector(Collector):
    def __init__(self, state: State) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        snap = self._state.snapshot
        length = GaugeMetricFamily(
            "celery_queue_length",
            "Messages waiting in the broker queue, summed over priority sub-queues; excludes "
            "messages workers prefetched (see celery_tasks_reserved).",
            labels=["queue_name"],
        )
        consumers = GaugeMetricFamily(
            "celery_queue_consumers",
            "Consumers attached to the queue (RabbitMQ: from the broker; Redis, which has no "
            "such count: live workers consuming it).",
            labels=["queue_name"],
        )
        workers = GaugeMetricFamily(
            "celery_queue_workers",
            "Live workers consuming the queue; stays at 0 when all of them are gone.",
            labels=["queue_name"],
        )
        oldest = GaugeMetricFamily(
            "celery_queue_oldest_message_age_seconds", OLDEST_HELP, labels=["queue_name"]
        )
        consuming: dict[str, int] = {}
        for w in snap.workers.values():
            for queue_name in w.queues if w.up else ():
                consuming[queue_name] = consuming.get(queue_name, 0) + 1
        for name in sorted(snap.queues):
            q = snap.queues[name]
            if q.length is not None:
                length.add_metric([name], q.length)
            n_consumers = q.consumers if q.consumers is not None else consuming.get(name, 0)
            consumers.add_metric([name], n_consumers)
            workers.add_metric([name], consuming.get(name, 0))
            if q.oldest_age is not None:
                oldest.add_metric([name], q.oldest_age)
        yield length
        yield consumers
        yield workers
        yield oldest
        if snap.unacked is not None:
            yield GaugeMetricFamily(
                "celery_broker_unacked_messages",
                "Redis broker: messages workers took but have not acknowledged (prefetched, "
                "ETA, or running with acks_late). Not part of celery_queue_length.",
                value=snap.unacked,
            )
