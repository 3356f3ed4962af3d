"""Held effects kept as codes and read from the entry at release (ledger/pending.py) count
exactly what the same effects held as explicit values did, in every kind and source order:
random streams run through two ledgers, one whose store keeps every effect explicitly with
its value when held (what the store did before), compared after each step."""

from __future__ import annotations

import random
from typing import Any

import pytest

from exporter.clock import FakeClock
from exporter.ledger import Ledger
from exporter.ledger.entry import Entry
from exporter.ledger.hosts import HostCounts
from exporter.ledger.pending import Effect, PendingLabels, expand
from exporter.taskdata import (
    FAILURE,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    SENT,
    SOURCE_EVENTS,
    SOURCE_PUBSUB,
    SOURCE_RECONCILE,
    STARTED,
    SUCCESS,
    TaskUpdate,
)

STATES = (SENT, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED, REJECTED)
SOURCES = (SOURCE_EVENTS, SOURCE_EVENTS, SOURCE_PUBSUB, SOURCE_RECONCILE)


class ExplicitStore(PendingLabels):
    """Every effect as an explicit tuple with its value at hold time (the old layout)."""

    __slots__ = ()

    def hold(
        self, task_id: str, e: Entry, code: int, now: float, extra: Effect | None = None
    ) -> bool:
        ok = True
        for effect in expand([code, extra] if extra else code, e):
            ok = super().hold(task_id, e, 0, now, effect) and ok
        return ok


def _ledgers(clock: FakeClock, explicit: bool, **kw: Any) -> Ledger:
    if kw.pop("compat", False):
        kw["hosts"] = HostCounts((0.1, 1.0), 3, 2, 50)
    led = Ledger(clock=clock, **kw)
    if explicit:
        p = led._tables.pending
        led._tables.pending = ExplicitStore(p.grace, p.limit)
    return led


def _update(rng: random.Random, n_ids: int, now: float) -> TaskUpdate:
    return TaskUpdate(
        task_id=f"t{rng.randrange(n_ids)}",
        state=rng.choice(STATES),
        source=rng.choice(SOURCES),
        timestamp=now - rng.choice((0.0, 1.0, 30.0, 1000.0)) if rng.random() < 0.7 else None,
        name=rng.choice((None, None, "a", "b", "c", "d")),
        queue=rng.choice((None, None, None, "q1", "q2")),
        worker=rng.choice((None, None, "w1@h", "w2@h", "w3@x", "w4@y")),
        runtime=rng.choice((None, None, 0.05, 0.5, 2.0, 3)),
        retries=rng.choice((None, None, None, 0, 1, 2, 5)),
        exception_type=rng.choice((None, None, "KeyError", "ValueError", "Boom", "")),
        eta=rng.choice((None, None, None, now - 2.0)),
    )


def _seen(led: Ledger) -> Any:
    """What anyone reads: counters, histograms, hosts, window, last times, saved state."""
    c = led.counts()
    saved = led.export_state()
    held = {k: sorted(v.split("\x1f")[5:]) for k, v in saved["seen"].items()}
    return (
        c,
        led.host_counts(),
        led.success_ratio(),
        led.last_times(),
        # (rows in the order first counted: effects of one task come back in another order)
        {
            k: sorted(map(repr, v)) if isinstance(v, list) else v
            for k, v in saved["counters"].items()
        },
        {k: _effects(v) for k, v in held.items()},
        sorted(saved["drop"]),
    )


def _effects(raw: list[str]) -> list[Any]:
    """Saved held effects as a multiset; retried increments by their sum and number."""
    import json

    if not raw:
        return []
    items = json.loads(raw[0])
    retried = [i for i in items if i[:2] == ["c", "retried"]]
    rest = sorted(repr(i) for i in items if i[:2] != ["c", "retried"])
    return [*rest, len(retried), sum(i[2] for i in retried)]


CONFIGS = [
    {},
    {"compat": True},
    {"worker_label": True, "derive_runtime": True},
    {"compat": True, "derive_runtime": True, "max_task_names": 2, "max_exception_types": 1},
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("seed", range(12))
def test_codes_count_what_explicit_effects_counted(config: dict[str, Any], seed: int) -> None:
    rng = random.Random(seed * 31 + len(config))
    clock = FakeClock(1_000_000.0)
    kw = {"max_tasks": rng.choice((4, 8, 64)), "label_grace": 5.0, **config}
    new, old = _ledgers(clock, False, **kw), _ledgers(clock, True, **kw)
    n_ids = rng.choice((3, 6, 20))
    for step in range(400):
        roll = rng.random()
        if roll < 0.03:  # a restart: saved state read back by a fresh ledger of each kind
            new_saved, old_saved = new.export_state(), old.export_state()
            new, old = _ledgers(clock, False, **kw), _ledgers(clock, True, **kw)
            new.import_state(new_saved)
            old.import_state(old_saved)
        elif roll < 0.08:
            running = [
                (f"t{rng.randrange(n_ids)}", rng.choice(("a", "unknown")),
                 rng.choice((None, "q1")), rng.choice(("w1@h", "w5@z")), None)
            ]  # fmt: skip
            new.observe_running(running)
            old.observe_running(running)
        elif roll < 0.15:
            clock.advance(rng.choice((1.0, 3.0, 6.0)))
        else:
            batch = [_update(rng, n_ids, clock.time()) for _ in range(rng.choice((1, 1, 3)))]
            assert new.apply_many(batch) == old.apply_many(batch)
        if step % 20 == 0 or roll < 0.15:
            assert _seen(new) == _seen(old), step
    clock.advance(10.0)
    assert _seen(new) == _seen(old)
    assert new.counts().label_pending == 0


def test_a_retry_then_a_success_waiting_for_the_queue() -> None:
    clock = FakeClock(1000.0)
    new, old = _ledgers(clock, False, label_grace=5.0), _ledgers(clock, True, label_grace=5.0)
    stream = [
        TaskUpdate("a", RECEIVED, SOURCE_EVENTS, name="t", retries=0),
        TaskUpdate("a", RETRY, SOURCE_EVENTS, exception_type="KeyError"),
        TaskUpdate("a", RECEIVED, SOURCE_EVENTS, retries=1),
        TaskUpdate("a", STARTED, SOURCE_EVENTS, worker="w@h"),
        TaskUpdate("a", SUCCESS, SOURCE_EVENTS, runtime=0.4),
        TaskUpdate("a", SUCCESS, SOURCE_PUBSUB, runtime=0.9),  # another runtime while held
        TaskUpdate("a", FAILURE, SOURCE_RECONCILE, exception_type="X"),  # a state changed
        TaskUpdate("a", FAILURE, SOURCE_PUBSUB, exception_type="Y"),  # another exception
    ]
    for u in stream:
        new.apply(u)
        old.apply(u)
    assert new.counts().label_pending == 1
    assert _seen(new) == _seen(old)
    new.apply(TaskUpdate("a", SUCCESS, SOURCE_PUBSUB, queue="q"))
    old.apply(TaskUpdate("a", SUCCESS, SOURCE_PUBSUB, queue="q"))
    c = new.counts()
    assert c.label_pending == 0 and _seen(new) == _seen(old)
    assert c.tasks[("t", "q", "retried")] == 1 and c.exceptions == {("t", "X"): 1}
    assert c.runtime[("t", "q")].sum == 0.4


def test_an_entry_evicted_while_held_counts_its_own_values() -> None:
    clock = FakeClock(1000.0)
    kw: dict[str, Any] = {"label_grace": 5.0, "max_tasks": 4, "compat": True}
    new, old = _ledgers(clock, False, **kw), _ledgers(clock, True, **kw)
    for i in range(6):  # one waits for its queue, then four named ones push it out
        stream = [
            TaskUpdate(f"h{i}", STARTED, SOURCE_EVENTS, name="n", worker="w@h"),
            TaskUpdate(f"h{i}", FAILURE if i % 3 else SUCCESS, SOURCE_EVENTS,
                       runtime=0.1 * i, exception_type=f"E{i % 2}"),
        ]  # fmt: skip
        stream += [
            TaskUpdate(f"k{i}.{j}", SUCCESS, SOURCE_EVENTS, name="n", queue="q", worker="w@h")
            for j in range(4)
        ]
        for u in stream:
            new.apply(u)
            old.apply(u)
        assert new.counts().label_pending == 0  # evicted: released before it went
    c = new.counts()
    assert c.label_overflow == 6 and c.unattributed == 0
    assert c.tasks[("n", "unknown", "failed")] == 4 and c.runtime[("n", "unknown")].sum == 1.5
    assert _seen(new) == _seen(old)
