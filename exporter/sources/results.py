"""Result-backend pub/sub source: every stored task state, as Celery's Redis backend publishes it.

Celery's Redis backend PUBLISHes each result on a channel named like its key, so one
PSUBSCRIBE `<global_keyprefix>celery-task-meta-*` hears every transition. Pub/sub is
server-wide, not per database: when other databases of the server hold keys, each batch is
checked with EXISTS in ours and foreign results are skipped (`other_db`). Messages published
while disconnected are lost, so every reconnect asks the reconcile source for a run. The
connection is read in batches by the loop the lean event consumer uses (`pubsub_batch`).
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
    task_id_from_key,
)
from exporter.keeper.gate import StartGate
from exporter.outage import Backoff, OutageLog
from exporter.pubsub_batch import LINGER, Waker, read_batches
from exporter.sources.base import SourceStats, Tally
from exporter.state import State
from exporter.taskdata import SOURCE_PUBSUB, TaskUpdate

log = logging.getLogger(__name__)
OTHER_DB = "other_db"


class ResultsSource:
    name = SOURCE_PUBSUB

    def __init__(
        self,
        state: State,
        client_factory: Callable[[], Any],
        gate: StartGate,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.state = state
        self._client_factory = client_factory
        self._gate = gate
        self._on_reconnect = on_reconnect
        self._prefix = state.config.global_keyprefix
        self.pattern = f"{self._prefix}celery-task-meta-*"
        self.stats = SourceStats(state, self.name)
        self._waker = Waker()  # ends the read loop's sleep when stopped
        self._bg = Background("results-pubsub", self._run, on_stop=self._waker.set)
        self._backoff = Backoff()
        self._outage = OutageLog(log, "result pub/sub")
        self._first = True  # the first connection (a reconnect asks for a reconcile)
        self._verify_db = False
        self._verify_checked_at = float("-inf")
        self.connected = threading.Event()
        self.linger = LINGER

    def start(self) -> None:
        self._bg.start()

    def stop(self) -> None:
        self._bg.stop()

    def jobs(self) -> list[tuple[Callable[[], None], float, str]]:
        return []

    def _run(self) -> None:
        if not self._gate.wait(self._bg.stopping):
            return
        self._bg.retry(self._connect_and_listen, self._outage, self._backoff,
                       on_failure=self._disconnected)  # fmt: skip
        self.stats.publish(up=False)

    def _connect_and_listen(self) -> None:
        """One connection: subscribe, then read until stopped (or it fails: raises)."""
        client = self._client_factory()
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.psubscribe(self.pattern)
            self._check_other_dbs(client)
            self.connected.set()
            self.stats.publish(up=True)
            if not self._first and self._on_reconnect is not None:
                self._on_reconnect()  # results published during the gap were lost
            self._first = False
            self._backoff.reset()
            self._outage.ok()
            self._listen(client, pubsub)
            pubsub.close()
        finally:
            client.close()

    def _disconnected(self, exc: Exception) -> None:
        self.connected.clear()
        self.stats.publish(up=False, error=f"{type(exc).__name__}: {exc}")

    def _listen(self, client: Any, pubsub: Any) -> None:
        """Read the subscribed connection with the loop the lean event consumer uses: one
        wake-up drains every buffered result, after a linger, and `handle` applies them under
        one ledger lock (redis-py's get_message woke once per result: ~240 us each)."""

        def tick() -> None:
            if time.monotonic() - self._verify_checked_at > 60:
                self._check_other_dbs(client)

        read_batches(
            pubsub.connection,
            self._bg.stopping.is_set,
            lambda batch: self.handle(batch, client),
            linger=self.linger,
            tick=tick,
            waker=self._waker,
        )

    def handle(self, batch: list[tuple[bytes, bytes]], client: Any = None) -> int:
        """Parse and apply one batch of (channel, data); returns how many counted. An empty
        batch (the wake-up was a PONG of the health check, every 15 s while idle) is no
        message: it neither writes the ledger (its change counter would make the keeper
        save and /metrics render again) nor stamps a last-message time."""
        if not batch:
            return 0
        updates: list[TaskUpdate] = []
        tally = Tally()
        skipped = tally.skipped
        for channel, data in batch:
            task_id = task_id_from_key(channel, self._prefix)
            if task_id is None:
                skipped["bad_key"] += 1
                continue
            try:  # the decoder never raises; were it to, one record is lost, not the batch
                parsed = parse_result(data, task_id, SOURCE_PUBSUB)
            except Exception as exc:  # pragma: no cover (a decoder bug)
                log.error("result %s not decoded: %s: %s", task_id, type(exc).__name__, exc)
                parsed = INVALID_JSON
            if isinstance(parsed, str):
                skipped[parsed] += 1
                if parsed in PARSE_ERRORS:
                    tally.parse_errors += 1
            else:
                updates.append(parsed)
        if updates and self._verify_db and client is not None:
            updates = self._ours(client, updates, tally)
        counted = self.state.ledger.apply_many(updates) if updates else 0
        self.state.details.note_many(updates)
        tally.received += len(updates)
        self.stats.add(tally)
        self.stats.publish(messages=len(batch), message_at=self.state.clock.time())
        return counted

    def _ours(
        self,
        client: Any,
        updates: list[TaskUpdate],
        tally: Tally,
    ) -> list[TaskUpdate]:
        pipe = client.pipeline(transaction=False)
        for u in updates:
            pipe.exists(f"{self._prefix}celery-task-meta-{u.task_id}")
        found = pipe.execute()
        kept = [u for u, n in zip(updates, found, strict=True) if n]
        if len(kept) != len(updates):
            tally.skip(OTHER_DB, len(updates) - len(kept))
        return kept

    def _check_other_dbs(self, client: Any) -> None:
        """Verify ownership only when another database of this server holds keys at all."""
        self._verify_checked_at = time.monotonic()
        try:
            ours = client.connection_pool.connection_kwargs.get("db", 0)
            keyspace = client.info("keyspace")
        except Exception as exc:  # e.g. INFO disabled: verify to be safe
            log.info("cannot read INFO keyspace (%s): checking each result's database", exc)
            self._verify_db = True
            return
        others = [k for k in keyspace if k.startswith("db") and k != f"db{ours}"]
        if others and not self._verify_db:
            log.info(
                "Redis databases %s also hold keys: skipping results not stored in db%s",
                ",".join(others),
                ours,
            )
        self._verify_db = bool(others)
