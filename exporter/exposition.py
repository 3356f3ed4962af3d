"""Render once, serve many: `/metrics` bodies kept ready, with their gzip form.

A scrape used to render the whole registry itself: at 1,000 task names over 20 queues that
is a 4 MB body and about 290 ms of CPU per scrape, paid again by each Prometheus of an HA
pair. Here one renderer thread renders each format a scraper has asked for (text 0.0.4,
OpenMetrics) when what it shows may have changed, and keeps the bytes and their gzip form; a
scrape picks the ready bytes and does no formatting, takes no ledger lock, waits on no I/O.
While the renderer renders, the GIL is handed over every `RENDER_SWITCH_INTERVAL` instead of
every 5 ms, so a scrape served meanwhile waits about a tenth as long for it.

When to render (`--metrics-render-interval`, default 1 s): once per expected scrape, just
before it. Each format keeps the time of its last scrape and the smoothed time between
scrapes; the renderer thread sleeps until `LEAD` seconds (plus a render's duration) before
the next scrape is expected, and renders then if
- the change token moved (ledger writes, a new snapshot, source health), or
- nothing moved, but the last render is `REFRESH` seconds old: values derived from the time
  (snapshot age, stuck tasks, the success window) stay that fresh.
Never sooner than one interval after the last render, nor ten times as long as that render
took (`DUTY`): a busy cluster is rendered at most once per interval and never more than 10% of
the time. A scrape that does not come when expected (or before a second scrape, when no period
is known) is waited for with renders twice as far from the last scrape each time (1, 2, 4, 8 s
after it...), so a format scraped once, or no longer, costs a handful of renders, and one not
scraped in `IDLE_AFTER` seconds is not rendered at all. Once scraped again, a format is
rendered at most one (smoothed) period after its last render: a period estimated too long,
after a missed scrape, planned each render after the next scrape and so never rendered
(bodies a minute old). The first scrape of a format renders it once, inline. So a body
served on time is about `LEAD` old, and one served early or late at most one period old
(or half the time since the scrape before it, if longer).
An interval of 0 renders on every scrape (the old path, kept for comparison and for tests).

`celery_exporter_metrics_render_age_seconds` is appended to every body as it is served, so
the age of what a scrape got is in the scrape itself. The body and its gzip form are
rendered.py's `Body`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from exporter.naming import DEFAULT_PREFIX
from exporter.rendered import EOF_LINE, Body, label_text
from exporter.textformat import encoder_for

REFRESH = 10.0  # seconds: re-render unchanged state this often (time-derived values)
# A render may take at most this share of the time: after a render that took r seconds the
# next waits at least r / DUTY. At 5,000 task names a render is ~0.5 s of CPU, so a busy
# cluster is rendered every ~5 s instead of every second, and rendering stays under 10% of
# a core however large the cluster grows (1,000 names: ~0.1 s, every second).
DUTY = 0.1
IDLE_AFTER = 600.0  # seconds without a scrape of a format before it is no longer rendered
# Render a changed state once per expected scrape, this many seconds (plus the last render's
# duration) before it: a render nobody fetches is wasted, and worker heartbeats change the
# state every second or two. Scraped every 15 s, idle with a worker connected, rendering on
# every change cost 1.7 ms/s of CPU, and twice per scrape period 0.9 ms/s, most of it the
# renderer's wake-ups (~0.15 ms each with cold caches; bench/idle_bench.py --threads,
# RESULTS.md). Prometheus scrapes a target at a fixed offset: arrivals vary by milliseconds.
LEAD = 0.5
# A scrape moves the next render earlier than the renderer's planned wake-up by more than
# this: the renderer is woken to plan again (a new format, a first period, a faster scraper).
# Less is left as it is (the render is late by at most this, still ahead of the scrape). And
# a render due within this much of a wake-up is done then: the renderer planned its wake-up
# before the scrape in between moved the period by its jitter (milliseconds to tens of them),
# and a second wake-up for the difference made it two per scrape.
REPLAN = LEAD / 2
# The GIL switch interval while the renderer thread renders (CPython's default is 5 ms).
# A scrape served meanwhile waits for the GIL each time its thread wakes (request read,
# handler, write): up to one interval each, so ~20 ms per scrape at 5 ms, ~2 ms at 0.5 ms.
# The render itself is barely slower (a switch costs microseconds, and only happens when
# another thread asks). Set for the render only, then put back.
RENDER_SWITCH_INTERVAL = 0.0005


@dataclass
class _Format:
    encoder: Callable[[CollectorRegistry], bytes]
    content_type: str
    openmetrics: bool
    body: Body | None = None
    token: Hashable = None
    asked_at: float = 0.0
    # Seconds between scrapes of this format, smoothed by halves (None until a second
    # scrape): from a first gap of 3 s to scrapes every 15 s in four scrapes, not eight (each
    # scrape while it is too short costs a render more). An HA pair scraping out of phase
    # gives about half its scrape interval: two or three renders per interval, each body at
    # most half an interval old.
    period: float | None = None
    checked_at: float = 0.0  # when the renderer last considered this format (rendered or not)


class Exposition:
    """The ready bodies of one registry. `change_token` is cheap and read without locks."""

    def __init__(
        self,
        registry: CollectorRegistry,
        change_token: Callable[[], Hashable],
        interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        background: bool = True,
        prefix: str = DEFAULT_PREFIX,
        static_labels: Mapping[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.interval = interval
        self._token = change_token
        self._now = monotonic
        self._background = background  # False: only refresh() renders (tests drive it)
        self._prefix = prefix
        self._labels = label_text(static_labels or {})
        self._formats: dict[str, _Format] = {}
        self._render_lock = threading.Lock()  # one render at a time per registry
        self.renders = 0
        self.render_cpu_seconds = 0.0  # CPU the renders took (this thread's), for the bench

    def get(self, accept: str, gzip_ok: bool) -> tuple[bytes, str]:
        """(body, content type) for a scrape with these Accept/Accept-Encoding headers."""
        encoder, content_type = choose_encoder(accept)
        fmt = self._formats.get(content_type)
        if fmt is None:
            openmetrics = content_type.startswith("application/openmetrics")
            fmt = self._formats.setdefault(
                content_type, _Format(encoder_for(encoder), content_type, openmetrics)
            )
        now = self._now()
        if fmt.asked_at:
            since = min(now - fmt.asked_at, IDLE_AFTER)
            fmt.period = since if fmt.period is None else fmt.period + (since - fmt.period) / 2
        fmt.asked_at = now
        body = fmt.body
        if body is None or self.interval <= 0:
            body = self._render(fmt)
        if self._background and self.interval > 0:
            # The first scrape too: renders before the second one (when no period is known
            # yet) are the renderer's. Watched from the second scrape only, the second got
            # the first's body, a whole scrape interval old.
            _renderer().watch(self)
        body_bytes = body.serve(
            gzip_ok, self._now(), self.renders, self.render_cpu_seconds, self._prefix, self._labels
        )
        return body_bytes, content_type

    def refresh(self) -> None:
        """Render what is due (called by the renderer thread, and by tests)."""
        now = self._now()
        for fmt in list(self._formats.values()):
            body, due = fmt.body, self._due(fmt, now)
            if body is None or due is None or due > now + REPLAN:
                continue
            fmt.checked_at = now
            if now - body.rendered_at >= REFRESH or self._token() != fmt.token:
                previous = sys.getswitchinterval()
                sys.setswitchinterval(min(previous, RENDER_SWITCH_INTERVAL))
                try:
                    self._render(fmt)
                finally:
                    sys.setswitchinterval(previous)

    def next_due(self) -> float | None:
        """Seconds until a render of some format may be due (None: no format is watched):
        the renderer sleeps that long."""
        now = self._now()
        dues = [self._due(fmt, now) for fmt in list(self._formats.values())]
        return min((max(0.0, due - now) for due in dues if due is not None), default=None)

    def _due(self, fmt: _Format, now: float) -> float | None:
        body = fmt.body
        if body is None or now - fmt.asked_at > IDLE_AFTER or self.interval <= 0:
            return None
        last = max(body.rendered_at, fmt.checked_at)
        floor = body.rendered_at + max(self.interval, body.took / DUTY)
        # The scrape is late or no period is known yet: twice as far from the last scrape.
        due = last + max(0.0, last - fmt.asked_at)
        if fmt.period is not None:
            lead = min(LEAD + body.took, fmt.period / 2)
            expected = fmt.asked_at + fmt.period - lead
            # the next scrape expected, then the one after it, then further apart
            due = expected if expected > last + REPLAN else max(due, expected + fmt.period)
            if fmt.asked_at > last:
                # Scraped since the last render: a period estimated too long (after a missed
                # scrape, a slow start) would plan each render after the next scrape, which
                # plans it later again, so the same body was served for minutes. Not later
                # than a period after the last render, then.
                due = min(due, last + fmt.period)
        return max(floor, due)

    def _render(self, fmt: _Format) -> Body:
        with self._render_lock:
            token = self._token()
            started, cpu = self._now(), time.thread_time()
            plain = fmt.encoder(self.registry)
            if fmt.openmetrics and plain.endswith(EOF_LINE):
                plain = plain[: -len(EOF_LINE)]
            body = Body.render(fmt.content_type, plain, started, fmt.openmetrics, self._now)
            fmt.body, fmt.token = body, token
            self.renders += 1
            self.render_cpu_seconds += time.thread_time() - cpu
            return body


class _Renderer:
    """One daemon thread for every live `Exposition` of the process (held weakly). It sleeps
    until the earliest render due (with none due, until a scrape); a scrape that brings a
    render forward wakes it."""

    def __init__(self) -> None:
        self._live: weakref.WeakSet[Exposition] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._wake_at = 0.0  # monotonic seconds the thread plans to wake at

    def watch(self, exposition: Exposition) -> None:
        """Called on each scrape: start watching it, or wake the thread if this scrape
        brought a render forward."""
        if exposition in self._live and self._thread is not None:
            due = exposition.next_due()
            if due is not None and due < self._wake_at - time.monotonic() - REPLAN:
                self._wake.set()
            return
        with self._lock:
            self._live.add(exposition)
            self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="metrics-render", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.clear()  # a scrape from here on wakes the wait below
            self._wake_at = float("inf")  # (planning now: any scrape with a due wakes it)
            with self._lock:
                live = list(self._live)
                if not live:
                    self._thread = None
                    return
            sleep: float | None = None
            for exposition in live:
                try:
                    exposition.refresh()
                    due = exposition.next_due()
                    if due is not None:
                        sleep = due if sleep is None else min(sleep, due)
                except Exception:  # a collector bug must not stop every later render
                    logging.getLogger(__name__).exception("rendering /metrics failed")
            live = []  # hold no strong reference while asleep
            self._wake_at = time.monotonic() + (sleep if sleep is not None else float("inf"))
            self._wake.wait(sleep)


_RENDERER = _Renderer()


def _renderer() -> _Renderer:
    return _RENDERER
