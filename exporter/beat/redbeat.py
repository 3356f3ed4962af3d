"""RedBeat's schedule, read-only: the sorted set `<prefix>:schedule` of entry keys scored by
their next run time (Unix seconds), a hash per entry (`<prefix><name>`) with `definition` and
`meta` JSON, and the lock `<prefix>:lock` beat holds and extends on every tick.

Key names follow RedBeat's own settings (`redbeat_key_prefix`, default "redbeat:";
`redbeat_lock_key`, default "<prefix>:lock", prefixed when it does not start with the prefix,
as RedBeat does). One read is: ZCARD, one ZRANGE of at most --beat-max-entries keys (soonest
due first), HMGETs pipelined in batches, and PTTL of the lock. Never KEYS or SCAN.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

from exporter.beat import decode, runspec
from exporter.beat.model import BeatEntry, BeatRead, LockState
from exporter.beat.runspec import RunSpec

BATCH = 200  # HMGETs per pipeline round trip: 200 entries of ~1 KiB each is one 200 KiB reply


def lock_key_of(prefix: str, lock_key: str | None) -> str:
    key = lock_key if lock_key is not None else prefix + ":lock"
    if key and not key.startswith(prefix):
        key = prefix + key
    return key


class RedBeatReader:
    source = "redbeat"

    def __init__(
        self,
        client: Callable[[], Any],
        key_prefix: str = "redbeat:",
        lock_key: str | None = None,
        tz: dt.tzinfo = dt.timezone.utc,
    ) -> None:
        self._factory = client
        self._client: Any = None
        self.prefix = key_prefix
        self.schedule_key = key_prefix + ":schedule"
        self.lock_key = lock_key_of(key_prefix, lock_key)
        self.tz = tz

    def read(self, now: float, max_entries: int) -> BeatRead:
        if self._client is None:
            self._client = self._factory()
        client = self._client
        with client.pipeline(transaction=False) as pipe:
            pipe.zcard(self.schedule_key)
            pipe.zrange(self.schedule_key, 0, max_entries - 1, withscores=True)
            if self.lock_key:
                pipe.pttl(self.lock_key)
            replies = pipe.execute()
        total, members = replies[0], replies[1]
        lock = _lock(replies[2]) if self.lock_key else None
        skipped: Counter[str] = Counter()
        entries: list[BeatEntry] = []
        for start in range(0, len(members), BATCH):
            chunk = members[start : start + BATCH]
            with client.pipeline(transaction=False) as pipe:
                for key, _score in chunk:
                    pipe.hmget(key, "definition", "meta")
                rows = pipe.execute(raise_on_error=False)
            for (key, score), row in zip(chunk, rows, strict=True):
                entry = self._entry(key, score, row, skipped)
                if entry is not None:
                    entries.append(entry)
        return BeatRead(
            "redbeat",
            now,
            tuple(entries),
            lock=lock,
            total=int(total),
            skipped=dict(skipped),
        )

    def _entry(self, key: Any, score: Any, row: Any, skipped: Counter[str]) -> BeatEntry | None:
        if isinstance(row, Exception) or not isinstance(row, list) or len(row) != 2:
            skipped[decode.WRONG_TYPE] += 1  # e.g. WRONGTYPE: the key is not a hash
            return None
        name = decode.clean(key) or ""
        if name.startswith(self.prefix):
            name = name[len(self.prefix) :]
        try:
            return decode.redbeat_entry(name, row[0], row[1], score, self.tz)
        except decode.Skip as skip:
            skipped[skip.reason] += 1
            return None

    def run_spec(self, name: str) -> RunSpec:
        """The entry's task, arguments and options, read now (for a fix-it "run now" plan).

        Its own short-lived client: the read job may close its client at any time."""
        client = self._factory()
        try:
            definition = client.hget(self.prefix + name, "definition")
        finally:
            client.close()
        return runspec.redbeat_spec(definition)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _lock(pttl: Any) -> LockState:
    if not isinstance(pttl, int) or pttl == -2:
        return LockState(held=False)
    return LockState(held=True, ttl=None if pttl < 0 else pttl / 1000.0)
