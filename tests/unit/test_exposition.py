"""Render once, serve many: when /metrics is rendered, what a scrape gets, gzip and formats."""

from __future__ import annotations

import gzip
import random

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from exporter.clock import FakeClock
from exporter.collectors import build_registry
from exporter.config import Config
from exporter.exposition import IDLE_AFTER, LEAD, REFRESH, REPLAN, Exposition
from exporter.http import create_app
from exporter.state import State
from exporter.taskdata import SUCCESS, TaskUpdate

OM = "application/openmetrics-text; version=1.0.0"


class Mono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _setup(interval: float = 1.0) -> tuple[State, Exposition, Mono]:
    state = State(Config(), FakeClock())
    mono = Mono()
    return (
        state,
        Exposition(build_registry(state), state.change_token, interval, mono, background=False),
        mono,
    )


def _succeeded(body: bytes) -> float:
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "celery_task_succeeded":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


def _done(state: State, task_id: str) -> None:
    state.ledger.apply(TaskUpdate(task_id, SUCCESS, "pubsub", name="t.a", queue="q"))


def test_renders_on_change_at_most_once_per_interval() -> None:
    state, expo, mono = _setup()
    assert _succeeded(expo.get("", False)[0]) == 0  # first scrape renders inline
    assert expo.renders == 1
    _done(state, "a")
    assert _succeeded(expo.get("", False)[0]) == 0  # served ready bytes: no render
    mono.t += 0.5
    expo.refresh()
    assert expo.renders == 1  # changed, but within the interval
    mono.t += 0.5
    expo.refresh()
    assert expo.renders == 2 and _succeeded(expo.get("", False)[0]) == 1
    mono.t += 5
    expo.refresh()
    assert expo.renders == 2  # nothing changed
    mono.t += REFRESH
    expo.refresh()
    assert expo.renders == 3  # time-derived values refreshed


def _age(body: bytes) -> float:
    line = body.split(b"\ncelery_exporter_metrics_render_age_seconds ")[1]
    return float(line.split(b"\n")[0])


class Run:
    """The renderer thread, a scraper and a changing cluster, played on the fake clock.

    The renderer refreshes, then sleeps for `next_due()`; a scrape that brings a render
    forward by more than `REPLAN` wakes it (as `_Renderer` does). The state changes every
    `change_every` seconds (worker heartbeats)."""

    def __init__(self, change_every: float | None = 1.0, interval: float = 1.0) -> None:
        self.state, self.expo, self.mono = _setup(interval)
        self.start = self.mono.t
        self.change_every = change_every
        self.wake: float | None = None  # when the renderer wakes next (None: on a scrape)
        self.wakeups = 0
        self.served: list[tuple[float, float, int]] = []  # (at, age, renders so far)
        self.changes = 0

    def until(self, end: float, scrapes: list[float]) -> Run:
        """Advance to `end` (seconds from the start), scraping at `scrapes` (the same)."""
        pending = sorted(t for t in scrapes if self.start + t >= self.mono.t)
        next_change = self.mono.t + (self.change_every or float("inf"))
        while True:
            scrape = self.start + pending[0] if pending else float("inf")
            wake = self.wake if self.wake is not None else float("inf")  # asleep for good
            t = min(scrape, wake, next_change)
            if t > self.start + end:
                self.mono.t = self.start + end
                return self
            self.mono.t = t
            if t == next_change:
                self.changes += 1
                _done(self.state, f"c{self.changes}")
                next_change += self.change_every or float("inf")
            elif t == scrape:
                pending.pop(0)
                body = self.expo.get("", False)[0]
                self.served.append((t - self.start, _age(body), self.expo.renders))
                due = self.expo.next_due()
                planned = self.wake if self.wake is not None else float("inf")
                if due is not None and due < planned - t - REPLAN:
                    self.wake = t  # the first scrape starts the thread; others may replan
            else:
                self.wakeups += 1
                self.expo.refresh()
                due = self.expo.next_due()
                self.wake = t + due if due is not None else None

    def renders_between(self, a: float, b: float) -> int:
        """Renders after the scrape at `a` up to the one at `b` (both served)."""
        by_time = {at: renders for at, _age, renders in self.served}
        return by_time[b] - by_time[a]


def test_a_changing_state_is_rendered_once_per_scrape_just_before_it() -> None:
    """Scraped every 15 s while heartbeats change the state every second: one render per
    scrape, LEAD seconds before it, and the renderer wakes once per scrape."""
    scrapes = [15.0 * i for i in range(21)]
    run = Run().until(300, scrapes)
    assert run.renders_between(60, 300) == 16  # one per scrape once the period is known
    # One per scrape; while learning the period, its start and 1, 2, 4, 8 and 16 s after
    assert run.wakeups <= 20 + 6
    ages = [age for at, age, _r in run.served if at >= 60]
    assert max(ages) <= LEAD + 0.01  # rendered LEAD before each scrape (renders take 0 s)
    assert min(ages) >= LEAD - 0.01


def test_jittered_and_paired_scrapes_get_bodies_at_most_half_a_period_old() -> None:
    rng = random.Random(7)
    jittered = [15.0 * i + rng.uniform(-0.05, 0.05) for i in range(1, 41)]
    run = Run().until(600, jittered)
    ages = [age for at, age, _r in run.served if at >= 60]
    assert max(ages) <= LEAD + 0.2  # the arrivals move by 0.1 s at most
    # One wake-up per scrape (a few more while learning the period): a render due within
    # REPLAN of a wake-up planned before the jittered scrape is done then, not woken for.
    assert run.wakeups <= len(jittered) + 6
    assert run.renders_between(run.served[4][0], run.served[-1][0]) <= len(run.served) - 4
    # A scrape 3 s early is served the body rendered for the one before: one period old.
    run = Run().until(160, [15.0 * i for i in range(10)] + [147.0])
    assert run.served[-1][1] == 147.0 - (135.0 - LEAD)  # within one period
    # An HA pair, 2 s out of phase: the smoothed period is about 7.5 s, three renders per
    # 15 s (one is the bound of a period after the last render: next test), and no body
    # older than half the interval (and a lead).
    paired = sorted([15.0 * i for i in range(1, 41)] + [15.0 * i + 2 for i in range(1, 41)])
    run = Run().until(610, paired)
    late = [(at, age, r) for at, age, r in run.served if at >= 120]
    assert max(age for _at, age, _r in late) <= 7.5 + LEAD
    assert late[-1][2] - late[0][2] <= 3 * (len(late) // 2)


def test_a_format_scraped_once_is_rendered_a_handful_of_times() -> None:
    """No period known: renders 1, 2, 4, 8... s after the scrape, then none after
    IDLE_AFTER. Each served body is at most half the time since the scrape before old."""
    run = Run().until(2 * IDLE_AFTER, [0.0])
    assert 9 <= run.expo.renders <= 12  # 1 + 1, 2, 4, ... 512 s after it
    assert run.wakeups <= 12
    # Scraped every 15 s for a while, then no more: the same back-off from the last one.
    run = Run().until(2 * IDLE_AFTER, [15.0 * i for i in range(11)])
    renders = run.expo.renders - run.served[-1][2]  # 14.5, 29.5, 59, 118, 236, 472 s after
    assert renders == 6
    # A scrape after a long gap gets a body at most half that gap old.
    run = Run().until(200, [0.0, 170.0])
    assert run.served[-1][1] <= 170 / 2


def test_the_renderer_watches_a_format_from_its_first_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Else the second scrape gets the first's inline render, a scrape interval old."""
    import exporter.exposition as exposition

    watched: list[Exposition] = []

    class Recorder:
        def watch(self, expo: Exposition) -> None:
            watched.append(expo)

    monkeypatch.setattr(exposition, "_renderer", Recorder)
    state = State(Config(), FakeClock())
    expo = Exposition(build_registry(state), state.change_token, 1.0, Mono())
    expo.get("text/plain", False)
    assert watched == [expo] and expo.renders == 1


def test_an_unchanged_state_is_rendered_every_refresh_at_most() -> None:
    run = Run(change_every=None).until(600, [5.0 * i for i in range(121)])
    assert 60 - 2 <= run.expo.renders <= 60 + 2  # every other scrape: REFRESH is 10 s
    assert max(age for _at, age, _r in run.served) <= REFRESH + LEAD + 0.01


def test_fast_scrapes_get_each_change_once_per_interval() -> None:
    run = Run(change_every=1.0).until(60, [0.5 * i for i in range(121)])
    assert 55 <= run.expo.renders <= 61  # the interval's bound: once a second
    assert max(age for at, age, _r in run.served if at > 5) <= 1.0 + 0.01


def test_age_is_appended_and_gzip_is_the_same_body() -> None:
    _state, expo, mono = _setup()
    plain, ctype = expo.get("", False)
    assert ctype.startswith("text/plain")
    mono.t += 2.5
    plain, _ = expo.get("", False)
    zipped, _ = expo.get("", True)
    assert gzip.decompress(zipped) == plain  # two gzip members read as one stream
    assert b"\ncelery_exporter_metrics_render_age_seconds 2.5\n" in plain
    assert b"\ncelery_exporter_metrics_renders_total 1\n" in plain
    names = {f.name for f in text_string_to_metric_families(plain.decode())}
    assert "celery_exporter_up" in names


def test_openmetrics_keeps_eof_last_and_formats_render_apart() -> None:
    _state, expo, _mono = _setup()
    om, ctype = expo.get(OM, False)
    assert ctype.startswith("application/openmetrics-text")
    assert b"\ncelery_exporter_metrics_render_age_seconds 0.0\n" in om
    assert b"# TYPE celery_exporter_metrics_renders counter\n" in om and om.endswith(b"\n# EOF\n")
    assert om.count(b"# EOF") == 1
    assert gzip.decompress(expo.get(OM, True)[0]) == om
    expo.get("", False)
    assert expo.renders == 2  # one per format


def test_a_format_nobody_scrapes_is_not_rendered() -> None:
    state, expo, mono = _setup()
    expo.get(OM, False)
    mono.t += IDLE_AFTER + 1
    expo.get("", False)  # text is still scraped, OpenMetrics is not
    renders = expo.renders
    _done(state, "a")
    mono.t += REFRESH
    expo.refresh()
    assert expo.renders == renders + 1


def test_interval_zero_renders_every_scrape() -> None:
    state, expo, _mono = _setup(interval=0)
    expo.get("", False)
    _done(state, "a")
    assert _succeeded(expo.get("", False)[0]) == 1
    assert expo.renders == 2


def test_http_serves_gzip_when_asked() -> None:
    state = State(Config(), FakeClock())
    client = TestClient(create_app(state))
    r = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert "celery_exporter_metrics_render_age_seconds" in r.text  # httpx decompressed it
    raw = client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert "celery_exporter_up" in raw.text


def test_served_bodies_pass_promtool_and_the_openmetrics_parser() -> None:
    import shutil
    import subprocess

    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

    state, expo, mono = _setup()
    _done(state, "a")
    mono.t += 3
    text, _ = expo.get("", False)
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make deps` installs Debian's prometheus package"
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
    om, _ = expo.get(OM, False)
    families = {f.name: f for f in om_parse(om.decode())}  # raises on a malformed body
    assert families["celery_exporter_metrics_renders"].samples[0].value == 2


def test_a_slow_render_spaces_the_next_ones_out() -> None:
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import CollectorRegistry

    mono = Mono()
    changes = [0]

    class Slow:
        def collect(self):  # type: ignore[no-untyped-def]
            mono.t += 0.5  # each render takes half a second
            yield GaugeMetricFamily("slow", "a slow collector", value=1)

    registry = CollectorRegistry()
    registry.register(Slow())
    expo = Exposition(registry, lambda: changes[0], 1.0, mono, background=False)
    expo.get("", False)
    for _ in range(8):  # changing all the time, checked every 0.5 s for 4 s
        changes[0] += 1
        mono.t += 0.5
        expo.refresh()
    assert expo.renders == 1  # 0.5 s renders: at most one per 5 s (DUTY 10%)
    mono.t += 0.5
    expo.refresh()
    assert expo.renders == 2


def test_the_served_tail_is_named_and_labelled_like_the_rest() -> None:
    state = State(Config(), FakeClock())
    expo = Exposition(
        build_registry(state),
        state.change_token,
        1.0,
        Mono(),
        background=False,
        prefix="myapp_",
        static_labels={"cluster": 'eu"1'},
    )
    text = expo.get("", False)[0].decode()
    assert '\nmyapp_exporter_metrics_render_age_seconds{cluster="eu\\"1"} 0.0\n' in text
    assert "# TYPE myapp_exporter_metrics_renders_total counter" in text
    assert "celery_exporter_metrics" not in text


def test_api_counters_move_the_change_token() -> None:
    from exporter.apicounters import ApiCounters

    state = State(Config(), FakeClock())
    before = state.change_token()
    state.attached(ApiCounters).overloaded()
    assert state.change_token() != before


def test_each_state_owns_one_of_each_attached_service() -> None:
    from exporter.apicounters import ApiCounters
    from exporter.beat.source import Board, board_for

    state, other = State(Config(), FakeClock()), State(Config(), FakeClock())
    counters = state.attached(ApiCounters)
    assert state.attached(ApiCounters) is counters
    assert other.attached(ApiCounters) is not counters
    assert board_for(state) is state.attached(Board)
    before = state.change_token()
    board_for(state).update("redbeat", lambda view: None)
    assert state.change_token() != before
    assert other.change_token() == other.change_token()


def test_a_background_render_hands_the_gil_over_often_then_restores_the_interval() -> None:
    import sys

    from exporter.exposition import RENDER_SWITCH_INTERVAL

    state, expo, mono = _setup()
    seen: list[float] = []

    class Probe:
        def collect(self) -> list[object]:
            seen.append(sys.getswitchinterval())
            return []

    expo.registry.register(Probe())  # type: ignore[arg-type]
    seen.clear()  # the registry's name check at registration collected once
    before = sys.getswitchinterval()
    expo.get("", False)  # inline (first scrape): the interval is left alone
    _done(state, "a")
    mono.t += 1.0
    expo.refresh()  # what the renderer thread calls
    assert seen == [before, RENDER_SWITCH_INTERVAL]
    assert sys.getswitchinterval() == before


def test_a_missed_scrape_or_a_late_second_one_never_stalls_the_renders() -> None:
    """A gap longer than the scrape interval (a missed scrape, a second scrape long after
    the first) makes the smoothed period too long for a few scrapes. Each render was then
    planned after the next scrape, which planned it later again: the same body was served
    for a minute (one missed scrape: 15.5, 30.5, 45.5, 60.5 s old) or two (a second scrape
    60 s after the first: 58 up to 133 s old). A scraped format is now rendered at most a
    period after its last render."""
    missed = [15.0 * i for i in range(30) if i != 10]  # the scrape at 150 s missed
    run = Run().until(450, missed)
    assert max(age for _at, age, _r in run.served) <= 15.0 + LEAD
    late = [0.0, 60.0] + [60.0 + 15.0 * i for i in range(1, 20)]
    run = Run().until(350, late)
    ages = [age for at, age, _r in run.served]
    assert ages[2] <= 60 - 15  # half the first gap old, and 15 s since
    assert max(ages[3:]) <= 20.0  # the period estimate: 37.5, 26, 20.6, 17.8... s
    assert max(ages[9:]) <= LEAD + 0.01
    polled = [0.2 * i for i in range(26)] + [5.0 + 15.0 * i for i in range(1, 20)]
    run = Run().until(300, polled)
    assert max(age for _at, age, _r in run.served) <= 15.0 + LEAD
