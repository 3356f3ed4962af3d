"""Reconcile source: SCAN + MGET over the result keys, folding what the live sources missed.

Runs once at start (after the keeper has loaded the saved ledger state) and then every
`--reconcile-interval` seconds, and again after the pub/sub listener reconnects. Never KEYS:
SCAN with COUNT `--reconcile-batch`, the keys of each batch read in sequential MGETs of at
most MGET_CHUNK (250) keys, and a token-bucket limit of
`--reconcile-max-keys-per-second` so a large backend is walked without stalling Redis.
The next command is always sent before the current reply is folded (inflight.py), so Redis
works while this thread decodes; the cyclic GC is paused for the pass (gcpause.py).
A run that scanned everything raises the ledger's watermark (see ledger.py), which is what
lets the ledger forget old results without recounting them on the next run.

A pass that fails part-way (a connection blip, any error, the exporter killed) is resumed by
the next run from the last cursor whose keys were all folded, with its original start time,
as long as Redis is the same server process (`run_id`): SCAN's guarantee holds across the
gap, so the keys already walked are not walked again. That matters on a backend larger than
the ledger: the ids evicted during the pass beyond the evicted-id memory (ledger/evicted.py)
are covered only by the watermark of a completed pass, and a fresh pass would count them
again. The position lives in the ledger (`note_pass`), so it is saved with the very counters
it produced and a restarted exporter resumes too. After a Redis restart (a new `run_id`)
the pass starts over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from exporter.background import Background
from exporter.decode.records import (
    INVALID_JSON,
    PARSE_ERRORS,
    parse_result,
    task_ids_from_keys,
)
from exporter.gcpause import gc_paused
from exporter.keeper.gate import StartGate
from exporter.outage import Backoff, OutageLog
from exporter.sources.base import SourceStats, Tally
from exporter.sources.inflight import InFlight
from exporter.state import State
from exporter.taskdata import READY_STATES, RETRY, SOURCE_RECONCILE, TaskUpdate

log = logging.getLogger(__name__)
PROGRESS_EVERY = 10.0  # seconds between progress lines on a large backend
# Keys per MGET. Redis's own time per call (INFO commandstats, 300k-result bench): MGET of
# 1,000 results ~0.96 ms, of 250 ~0.24 ms; SCAN COUNT 1000 ~0.85 ms is then the longest.
MGET_CHUNK = 250


class ReconcileSource:
    name = SOURCE_RECONCILE
    BACKOFF = (1.0, 30.0)  # seconds: first retry, cap (tests shorten it)

    def __init__(
        self,
        state: State,
        client_factory: Callable[[], Any],
        gate: StartGate,
        after_pass: Callable[[], None] | None = None,
    ) -> None:
        self.state = state
        self._client_factory = client_factory
        self._gate = gate
        # Called after each complete pass (the daemon passes the keeper's save): the counts
        # of a pass are saved with the watermark it raised.
        self._after_pass = after_pass
        cfg = state.config
        self._prefix = cfg.global_keyprefix
        self._batch = cfg.reconcile_batch
        self._rate = cfg.reconcile_max_keys_per_second
        self.stats = SourceStats(state, self.name)
        self._run_lock = threading.Lock()
        self._wanted = threading.Event()
        self._bg = Background("reconcile", self._loop, join_timeout=15, on_stop=self._wanted.set)
        self.runs = 0
        self.resumed = 0  # passes resumed after an interruption
        self.last_duration: float | None = None
        # An unreachable backend is logged once per outage, not on every retry.
        self._pass_outage = OutageLog(log, "reconcile")
        state.ledger.expect_backfill()

    def start(self) -> None:
        self._bg.start()

    def stop(self) -> None:
        self._bg.stop()

    def jobs(self) -> list[tuple[Callable[[], None], float, str]]:
        interval = self.state.config.reconcile_interval
        return [(self.request_run, interval, "reconcile")] if interval > 0 else []

    def request_run(self) -> None:
        """Ask for a run soon (cheap; runs never overlap)."""
        self._wanted.set()

    def _loop(self) -> None:
        """Wait for the keeper's load (the start gate), then run whenever asked."""
        if not self._gate.wait(self._bg.stopping):
            return
        self._wanted.set()  # the start-up run
        self._bg.retry(self._when_wanted, self._pass_outage, Backoff(*self.BACKOFF),
                       on_failure=self._pass_failed,
                       describe=lambda exc: f"pass failed: {exc}")  # fmt: skip

    def _when_wanted(self) -> None:
        """Wait until a run is asked for (or stop), then run one pass."""
        self._wanted.wait()
        if self._bg.stopping.is_set():
            return
        self._wanted.clear()
        self.run_once()

    def _pass_failed(self, exc: Exception) -> None:
        """Reported now; retried after the backoff delay or on the next request."""
        self.stats.publish(up=False, error=f"{type(exc).__name__}: {exc}")
        self._wanted.set()  # (the retry waits out the backoff delay first)

    def run_once(self, client: Any = None) -> int:
        """One full pass; returns how many results it counted. Raises on Redis errors."""
        if not self._run_lock.acquire(blocking=False):
            return 0
        try:
            with gc_paused():  # see gcpause.py: ~10% of a large pass, and no garbage in it
                return self._pass(client or self._client_factory())
        finally:
            self._run_lock.release()

    def _pass(self, client: Any) -> int:
        clock = self.state.clock
        started_wall = clock.time()
        started = time.monotonic()
        next_log = started + PROGRESS_EVERY
        scanned = read = counted = 0
        run_id = _run_id(client)
        ledger = self.state.ledger
        details = self.state.details
        resume = ledger.pass_position
        start_cursor = 0  # 0: a fresh pass; else where an interrupted one had folded up to
        if resume is not None and run_id and resume[0] == run_id:
            _, start_cursor, started_wall = resume
            self.resumed += 1
            log.info("reconcile: resuming the interrupted pass at cursor %d", start_cursor)
        scan = (
            "SCAN",
            start_cursor,
            "MATCH",
            f"{self._prefix}celery-task-meta-*",
            "COUNT",
            self._batch,
        )
        # One command always in flight: Redis reads the next chunk (or scans the next step)
        # while this thread folds the current one (see inflight.py).
        redis_ahead = InFlight(client)
        try:
            redis_ahead.send(*scan)
            while True:
                cursor, found = redis_ahead.result()
                cursor = int(cursor)
                # Results the ledger already counted as final are not read again.
                ids, keys = self._unknown(found) if found else ([], [])
                chunks = _chunks(ids, keys, MGET_CHUNK)
                tally = Tally()
                for n, (chunk_ids, chunk_keys) in enumerate(chunks):
                    if n == 0:
                        redis_ahead.send("MGET", *chunk_keys)
                    values = redis_ahead.result()
                    if n + 1 < len(chunks):
                        redis_ahead.send("MGET", *chunks[n + 1][1])
                    elif cursor:
                        redis_ahead.send("SCAN", cursor, *scan[2:])
                    updates = list(self._parse(chunk_ids, values, tally))
                    counted += ledger.apply_many(updates)
                    details.note_known(updates)  # adds reconcile's report to recent tasks only
                if not chunks and cursor:
                    redis_ahead.send("SCAN", cursor, *scan[2:])
                scanned += len(found)
                read += len(keys)
                tally.keys_scanned += len(found)
                self.stats.add(tally)
                if cursor and run_id:
                    ledger.note_pass((run_id, cursor, started_wall))
                # Token bucket: never faster than the configured keys per second, on average.
                ahead = scanned / self._rate - (time.monotonic() - started)
                if ahead > 0 and self._bg.stopping.wait(ahead):
                    return counted
                if not cursor:
                    break
                if time.monotonic() >= next_log:
                    next_log += PROGRESS_EVERY
                    log.info("reconcile: %d keys scanned, %d counted so far", scanned, counted)
        finally:
            redis_ahead.close()
        ledger.reconcile_completed(started_wall)
        self._gate.reconciled.set()
        duration = time.monotonic() - started
        self.runs += 1
        self.last_duration = duration
        self.stats.pass_completed(duration)
        self.stats.publish(messages=read, up=True, message_at=clock.time())
        if scanned >= 10 * self._batch or duration > PROGRESS_EVERY:
            log.info("reconcile: done, %d keys in %.1fs, %d counted", scanned, duration, counted)
        if self._after_pass is not None:
            self._after_pass()
        return counted

    def _unknown(self, keys: list[Any]) -> tuple[list[str | None], list[Any]]:
        """The ids (None: not a result key of ours) and keys still worth reading."""
        prefix = self._prefix
        ids = task_ids_from_keys(keys, prefix)
        known = self.state.ledger.settled_ids(ids)
        if not known:
            return ids, keys
        pairs = [(i, k) for i, k in zip(ids, keys, strict=True) if i is None or i not in known]
        return [i for i, _ in pairs], [k for _, k in pairs]

    def _parse(self, ids: list[str | None], values: list[Any], tally: Tally) -> list[TaskUpdate]:
        """The updates worth folding; skips and parse errors are added to `tally`."""
        updates: list[TaskUpdate] = []
        append = updates.append
        skipped = tally.skipped
        for task_id, raw in zip(ids, values, strict=True):
            if raw is None:
                continue  # expired between SCAN and MGET
            if task_id is None:
                skipped["bad_key"] += 1
                continue
            try:  # the decoder never raises; were it to, one record is lost, not the pass
                parsed = parse_result(raw, task_id, SOURCE_RECONCILE)
            except Exception as exc:  # pragma: no cover (a decoder bug)
                log.error("result %s not decoded: %s: %s", task_id, type(exc).__name__, exc)
                parsed = INVALID_JSON
            if parsed.__class__ is str:
                skipped[parsed] += 1
                if parsed in PARSE_ERRORS:
                    tally.parse_errors += 1
                continue
            assert isinstance(parsed, TaskUpdate)
            state = parsed.state
            if state in READY_STATES or (state == RETRY and parsed.retries is not None):
                # Final states carry date_done, which the watermark needs. A numbered RETRY
                # (result_extended) is safe to fold again and again: retries only ever
                # raise a per-task lower bound. STARTED is left to the live sources.
                append(parsed)
        return updates


def _chunks(ids: list[Any], keys: list[Any], size: int) -> list[tuple[list[Any], list[Any]]]:
    """(ids, keys) in MGETs of at most `size` keys: Redis runs a pipeline in one go, so only
    separate commands let other clients in between the chunks."""
    return [(ids[i : i + size], keys[i : i + size]) for i in range(0, len(keys), size)]


def _run_id(client: Any) -> str:
    """The Redis server process's id ("" when INFO is refused, e.g. renamed by a provider)."""
    try:
        return str(client.info("server").get("run_id") or "")
    except Exception as exc:  # resuming only narrows a recount; a pass works without it
        log.debug("INFO server refused: %s", exc)
        return ""
