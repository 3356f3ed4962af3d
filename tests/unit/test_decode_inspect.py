"""Inspect replies are decoded before the poller reads them: whatever answers a broadcast,
a poll completes, the page renders and the sitrep answers, and what was dropped is counted."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from exporter.clock import FakeClock
from exporter.cluster import InspectReply
from exporter.collectors import build_registry
from exporter.decode.inspect import clean_reply
from exporter.http import create_app
from exporter.poller import Poller
from exporter.state import State
from tests.support.api import HEAD_V, make_config
from tests.support.cluster import FakeReader

junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["\ud800", "a\nb", "x" * 600, "celery@h"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
request = st.fixed_dictionaries(
    {}, optional={"id": junk, "name": junk, "time_start": junk, "delivery_info": junk}
)
per_host = st.dictionaries(
    st.one_of(st.text(max_size=6), st.sampled_from(["w\ud800@h", "w1@h"])),
    st.one_of(junk, st.lists(st.one_of(request, junk), max_size=3)),
    max_size=3,
)
replies = st.fixed_dictionaries(
    {},
    optional={
        m: st.one_of(per_host, junk)
        for m in ("stats", "active_queues", "active", "reserved", "scheduled")
    },
)


class Hostile(FakeReader):
    def __init__(self, replies: dict[str, Any]) -> None:
        super().__init__()
        self.hostile = replies

    def inspect(self, timeout: float, expected: int | None = None) -> InspectReply:
        return InspectReply(self.hostile)


@settings(max_examples=80, deadline=None)
@given(replies)
def test_any_reply_polls_renders_and_answers(raw: dict[str, Any]) -> None:
    state = State(make_config(), FakeClock())
    Poller(state, Hostile(raw)).poll()
    assert state.snapshot.health.broker_up
    generate_latest(build_registry(state)).decode()
    client = TestClient(create_app(state))
    assert client.get("/api/sitrep", headers=HEAD_V).status_code == 200


def test_bad_parts_are_dropped_and_counted_good_ones_kept() -> None:
    raw = {
        "stats": {"w1@h": {"pool": {"max-concurrency": 4}, "total": {"t.a": 3, "t.b": -1}}, 5: {}},
        "active_queues": {"w1@h": [{"name": "celery"}, {"name": "\ud800q"}, "junk"]},
        "active": {
            "w1@h": [
                {"id": "t1", "name": "t.a", "time_start": 1.0e9,
                 "delivery_info": {"routing_key": "celery"}},
                {"name": "no id"},
            ]
        },
    }  # fmt: skip
    reply, dropped = clean_reply(InspectReply(raw))  # type: ignore[arg-type]
    assert dropped == 4  # a negative count, a non-string host, a junk queue, a task without id
    assert reply.replies["stats"]["w1@h"]["total"] == {"t.a": 3}
    assert [q["name"] for q in reply.replies["active_queues"]["w1@h"]] == ["celery", "\ufffdq"]
    assert reply.replies["active"]["w1@h"][0]["delivery_info"]["routing_key"] == "celery"
    state = State(make_config(), FakeClock())
    Poller(state, Hostile(raw)).poll()
    text = generate_latest(build_registry(state)).decode()
    assert "celery_exporter_inspect_reply_dropped_total 4.0" in text
    assert state.snapshot.workers["w1@h"].queues == ("celery", "\ufffdq")
