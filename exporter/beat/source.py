"""Runs one schedule reader periodically and keeps what it found on the board.

A read that fails (Redis or the database down, a timeout) keeps the previous read, marks the
source down, logs the outage once (exporter/outage.py) and is retried at the next interval.
The board also follows RedBeat's lock between reads: beat extends it to its full timeout on
every tick, so the lock's remaining time says when it was last refreshed.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from exporter.beat.model import BeatRead
from exporter.beat.runspec import RunSpec
from exporter.outage import OutageLog
from exporter.state import State

log = logging.getLogger(__name__)


class Reader(Protocol):
    source: str

    def read(self, now: float, max_entries: int) -> BeatRead: ...

    def close(self) -> None: ...


@dataclass
class SourceView:
    """The latest read of one schedule source and how the source is doing."""

    source: str
    read: BeatRead | None = None
    up: bool = False
    last_ok: float | None = None
    first_ok: float | None = None  # when watching began: the anchor when no run is known
    reads: int = 0
    errors: int = 0
    last_error: str | None = None
    skipped: Counter[str] = field(default_factory=Counter)
    lock_timeout: float = 0.0  # the largest lock TTL seen: RedBeat's lock timeout
    lock_refreshed_at: float | None = None


class Board:
    """Every schedule source's latest view, for the collector and the API."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: dict[str, SourceView] = {}
        self.version = 0  # bumped by every update: part of the /metrics change token
        # source -> its reader's `run_spec(entry name)`, for fix-it's "run now" (readers that
        # can read an entry's arguments: RedBeat, django-celery-beat)
        self.run_specs: dict[str, Callable[[str], RunSpec]] = {}

    def views(self) -> list[SourceView]:
        with self._lock:
            return [
                SourceView(**{**v.__dict__, "skipped": Counter(v.skipped)})
                for v in self._views.values()
            ]

    def update(self, source: str, change: Callable[[SourceView], None]) -> None:
        with self._lock:
            view = self._views.setdefault(source, SourceView(source))
            change(view)
            self.version += 1


def board_for(state: State) -> Board:
    """The board of this daemon's state: one per State, attached to it."""
    return state.attached(Board)


def note_read(view: SourceView, read: BeatRead) -> None:
    view.read = read
    view.up = True
    view.last_ok = read.at
    if view.first_ok is None:
        view.first_ok = read.at
    view.reads += 1
    view.skipped.update(read.skipped)
    if read.total > len(read.entries) + sum(read.skipped.values()):
        view.skipped["max_entries"] += read.total - len(read.entries) - sum(read.skipped.values())
    lock = read.lock
    if lock is not None and lock.held and lock.ttl is not None:
        view.lock_timeout = max(view.lock_timeout, lock.ttl)
        refreshed = read.at - (view.lock_timeout - lock.ttl)
        if view.lock_refreshed_at is None or refreshed > view.lock_refreshed_at:
            view.lock_refreshed_at = refreshed


class BeatSource:
    """A `Source` (exporter/sources) that reads one schedule store every --beat-interval."""

    def __init__(self, state: State, reader: Reader) -> None:
        self.state = state
        self.reader = reader
        self.name = f"beat_{reader.source}"
        self._board = board_for(state)
        self._outage = OutageLog(log, f"beat schedule ({reader.source})")
        self._skip_logged: set[str] = set()
        self._board.update(reader.source, lambda v: None)
        run_spec = getattr(reader, "run_spec", None)
        if run_spec is not None:
            self._board.run_specs[reader.source] = run_spec

    def start(self) -> None:
        return None

    def stop(self) -> None:
        self.reader.close()

    def jobs(self) -> list[tuple[Callable[[], None], float, str]]:
        return [(self.run, self.state.config.beat_interval, self.name)]

    def run(self) -> None:
        now = self.state.clock.time()
        try:
            read = self.reader.read(now, self.state.config.beat_max_entries)
        except Exception as exc:  # the store is down or answered nonsense: keep serving
            self.reader.close()
            self._outage.failed(_oneline(exc), self.state.config.beat_interval)  # once

            error = _oneline(exc)

            def failed(view: SourceView) -> None:
                view.up = False
                view.errors += 1
                view.last_error = error

            self._board.update(self.reader.source, failed)
            return
        self._outage.ok()
        self._board.update(self.reader.source, lambda view: note_read(view, read))
        for reason in sorted(set(read.skipped) - self._skip_logged):
            self._skip_logged.add(reason)  # once per reason: the counter tells the rest
            log.warning(
                "beat schedule (%s): %d record(s) skipped (%s); counted in "
                "celery_exporter_beat_records_skipped_total",
                self.reader.source,
                read.skipped[reason],
                reason,
            )


def _oneline(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
