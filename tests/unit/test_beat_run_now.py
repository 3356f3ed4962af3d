"""Run-now of beat entries without a cluster: the entry's stored definition decoded totally
(what may be sent as is, what may not, which options are carried over), and which entries a
plan proposes: missed ones while beat is up, named ones always, none from the schedule file;
the sitrep points at fix-it only where it can act."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.api.sitrep import build_sitrep
from exporter.beat.model import BeatEntry, Every, LockState
from exporter.beat.runspec import NotRunnable, RunSpec, django_spec, redbeat_spec
from exporter.beat.source import BeatSource, board_for
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.remediation import run_entry
from exporter.remediation.plan import RetryClaim
from exporter.state import State
from tests.support.api import HEAD_O
from tests.support.beat import ScriptedReader


def definition(**fields: Any) -> bytes:
    base = {"name": "tick", "task": "app.add", "schedule": {"__type__": "interval", "every": 5},
            "args": [1, 2], "kwargs": {"x": "y"}, "enabled": True}  # fmt: skip
    return orjson.dumps({**base, **fields})


def test_redbeat_definition_to_run_spec() -> None:
    spec = redbeat_spec(definition(options={"queue": "q1", "priority": 3, "expires": 30}))
    assert spec == RunSpec("app.add", [1, 2], {"x": "y"}, {"queue": "q1", "priority": 3},
                           ("expires",))  # fmt: skip
    assert redbeat_spec(definition(args=None, kwargs=None)).args == []
    routed = redbeat_spec(definition(options={"exchange": "ex", "routing_key": "rk"}))
    assert routed.options == {"exchange": "ex", "routing_key": "rk"}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (None, "no longer in RedBeat's schedule"),
        (b"\xff\xfe", "not JSON"),
        (b"[1]", "not a JSON object"),
        (definition(task=None), "task name is missing"),
        (definition(args={"a": 1}), "not a JSON list and object"),
        (definition(args=[{"__type__": "datetime", "year": 2024}]), "encoded Python objects"),
        (definition(options={"priority": 999}), "priority"),
        (definition(options={"headers": [1]}), "headers"),
        (definition(options="q"), "options are not a JSON object"),
        (definition(args=["x" * 70_000]), "larger than"),
    ],
)
def test_definitions_that_cannot_be_sent_as_is(raw: Any, why: str) -> None:
    with pytest.raises(NotRunnable, match=why):
        redbeat_spec(raw)


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), st.none()))
def test_the_decoder_is_total(raw: Any) -> None:
    with contextlib.suppress(NotRunnable):
        redbeat_spec(raw)


def test_django_row_to_run_spec() -> None:
    row = ("app.add", "[1, 2]", '{"x": 1}', "q1", None, None, 4, '{"h": "v"}')
    spec = django_spec(row)
    assert spec.args == [1, 2] and spec.kwargs == {"x": 1}
    assert spec.options == {"queue": "q1", "priority": 4, "headers": {"h": "v"}}
    assert django_spec(("app.add", "[]", "{}", None, "", "", None, "{}")).options == {}


class SpecReader(ScriptedReader):
    """A scripted RedBeat whose entries' definitions can be read, as the real reader's can."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def run_spec(self, name: str) -> RunSpec:
        self.asked.append(name)
        if name == "broken":
            raise ConnectionError("down")
        return RunSpec(f"app.{name}", [1], {}, {"queue": "beatq"})


def _setup(lock: LockState) -> tuple[State, FakeClock, SpecReader, ScriptedReader]:
    clock = FakeClock()
    now = clock.time()
    state = State(Config(beat_grace=10.0), clock)
    reader = SpecReader()
    reader.lock = lock
    reader.entries = [
        BeatEntry("late", "app.late", Every(60.0), next_due=now - 300, last_run_at=now - 360),
        BeatEntry("fine", "app.fine", Every(60.0), next_due=now + 30, last_run_at=now - 30),
        BeatEntry("broken", "app.broken", Every(60.0), next_due=now - 300),
        BeatEntry("off", "app.off", Every(60.0), enabled=False, next_due=now - 300),
    ]
    file_reader = ScriptedReader("file")
    file_reader.entries = [  # beat sent "ok" since "late" came due: beat is up
        BeatEntry("late", "app.late", Every(60.0), next_due=now - 300),
        BeatEntry("ok", "app.ok", Every(60.0), next_due=now + 30, last_run_at=now - 30),
    ]
    BeatSource(state, reader).run()
    BeatSource(state, file_reader).run()
    return state, clock, reader, file_reader


def _propose(state: State, requested: tuple[str, ...] = (), held: Any = None) -> Any:
    board = board_for(state)
    return run_entry.propose(
        views=board.views(), run_specs=board.run_specs, last=state.ledger.last_times(),
        requested=requested, automatic=not requested,
        claims=lambda ids: {i: held for i in ids} if held else {},
        now=state.clock.time(), grace=10.0, stale_after=330.0,
    )  # fmt: skip


def test_missed_entries_are_proposed_while_beat_is_up() -> None:
    state, _, _, _ = _setup(LockState(True, 1500.0))
    actions, skipped = _propose(state)
    assert [a.target for a in actions] == [f"redbeat/late@{state.clock.time() - 300:.0f}"]
    assert actions[0].queue == "beatq" and actions[0].args == [1] and actions[0].kind == "run_entry"
    why = {s.task_id: (s.reason, s.fix) for s in skipped}
    assert why["redbeat/broken"][0].startswith("its schedule store could not be read")
    assert why["file/late"] == ("its arguments are unknown", run_entry.NO_ARGS_FIX)
    assert "redbeat/off" not in why and "redbeat/fine" not in why  # disabled, or not late
    report = build_sitrep(state).immediate_actions
    assert any(line.endswith('run_entries ["redbeat/late"].') for line in report)
    assert not any("file/late" in line for line in report)  # the file cannot be acted on


def test_beat_down_leaves_missed_entries_to_the_restarted_beat() -> None:
    state, _, reader, _ = _setup(LockState(False))
    actions, skipped = _propose(state)
    assert actions == [] and reader.asked == []
    assert any(s.task_id == "redbeat/late" and "beat is down" in s.reason for s in skipped)
    assert not any("Fix-it can send" in line for line in build_sitrep(state).immediate_actions)
    # named, it is proposed anyway (the operator knows beat will not come back soon)
    actions, skipped = _propose(state, ("redbeat/late",))
    assert [a.task_name for a in actions] == ["app.late"]


def test_named_entries_ambiguous_unknown_disabled_or_already_sent() -> None:
    state, _, _, _ = _setup(LockState(True, 1500.0))
    actions, skipped = _propose(state, ("late", "nope", "redbeat/off", "fine"))
    assert [a.target.split("@")[0] for a in actions] == ["redbeat/fine"]
    why = {s.task_id: s.reason for s in skipped}
    assert why == {
        "late": "several sources have an entry of that name",
        "nope": "no such beat entry",
        "redbeat/off": "the entry is disabled",
    }
    actions, skipped = _propose(state, ("redbeat/late",), held=RetryClaim("p1", 0, "t1"))
    assert actions == [] and "already sent now by plan p1" in skipped[0].reason


class Crash(BaseException):
    """The process dies here: nothing in the executor may catch it."""


def test_crash_between_send_and_record_sends_an_entry_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.api import PlanEnv

    env = PlanEnv()
    now = env.clock.time()
    reader = SpecReader()
    reader.lock = LockState(True, 1500.0)
    reader.entries = [BeatEntry("late", "app.late", Every(60.0), next_due=now - 300)]
    BeatSource(env.state, reader).run()
    plan = env.propose(run_entries=["late"])
    [action] = plan["actions"]
    assert action["options"] == {"queue": "beatq"} and action["args"] is None

    real = run_entry.control.send_entry

    def send_then_die(*args: Any, **kwargs: Any) -> str:
        real(*args, **kwargs)
        raise Crash("between send and record")

    monkeypatch.setattr(run_entry.control, "send_entry", send_then_die)
    with pytest.raises(Crash):
        env.remediation().decide("operator#test", plan["id"], plan["digest"])
    monkeypatch.undo()
    env.redis.delete(f"celery-ops-exporter:plan:{plan['id']}:lease")  # the process is gone
    [sent] = env.waiting("beatq")
    assert sent["headers"]["task"] == "app.late" and sent["body"][0] == [1]
    assert sent["headers"]["celery_ops_exporter_beat_entry"] == action["target"]
    assert sent["headers"]["celery_ops_exporter_plan"] == plan["id"]

    seen = env.client.get(f"/api/plans/{plan['id']}", headers=HEAD_O).json()
    assert seen["status"] == "interrupted"
    [doubt] = seen["outcomes"]
    assert doubt["action"] == "run_entry" and doubt["outcome"] == "unknown"
    again = env.propose(run_entries=["late"])
    assert again["actions"] == [] and "in doubt" in again["not_actionable"][0]["reason"]
    # the worker ran it: its result is stored, so it counts as sent, for good
    env.redis.set(f"celery-task-meta-{doubt['new_task_id']}", orjson.dumps({"status": "SUCCESS"}))
    again = env.propose(run_entries=["late"])
    assert "already sent now by plan" in again["not_actionable"][0]["reason"]
    assert env.waiting("beatq") == []
