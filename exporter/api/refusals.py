"""401/403 refusals: counted, logged with a rate limit, and audited without blocking.

Every refusal counts in `celery_exporter_api_refused_total{reason}`. The log gets at most one
line per reason every `LOG_EVERY` seconds (by the injectable clock) with the client address,
method, path and reason, never the token or any header; the next line says how many were not
logged in between. API refusals are also appended to the audit stream as `access_refused` by
one background thread holding at most `AUDIT_BACKLOG` pending writes: the response never waits
for Redis, and a flood or a stalled Redis drops audit entries (counted in
`celery_exporter_api_refusals_unaudited_total`) instead of queueing without end.
`/metrics` refusals are counted and logged only: the metrics listener never calls Redis.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import redis
from fastapi import Request

from exporter.api.auth import Refused
from exporter.apicounters import ApiCounters
from exporter.clock import Clock
from exporter.outage import OutageLog
from exporter.remediation.store import PlanStore

log = logging.getLogger(__name__)
LOG_EVERY = 60.0  # seconds between two log lines of the same refusal reason
AUDIT_BACKLOG = 100  # audit writes of refusals waiting at most; beyond, they are dropped
TEXT_MAX = 200  # characters of a path kept in the log and the audit entry


def clean(text: str, limit: int = TEXT_MAX) -> str:
    """Client-sent text made safe for one log line: printable, bounded."""
    cut = text[:limit]
    return "".join(c if c.isprintable() else "?" for c in cut) + ("…" if len(text) > limit else "")


class RefusalLog:
    def __init__(self, stats: ApiCounters, clock: Clock, store: PlanStore | None = None) -> None:
        self._stats, self._clock, self._store = stats, clock, store
        self._lock = threading.Lock()
        self._last_logged: dict[str, float] = {}
        self._quiet: dict[str, int] = {}  # refusals not logged since the last line, by reason
        self._pending = 0
        self._pool: ThreadPoolExecutor | None = None
        self._outage = OutageLog(log, "audit of refused API requests (result backend Redis)")

    def note(self, request: Request, exc: Refused, *, audit: bool = True) -> None:
        """Count, maybe log, and maybe audit one refusal. Never blocks, never raises."""
        self._stats.refused(exc.reason)
        client = request.client.host if request.client else "unknown"
        path = clean(str(request.scope.get("path", "")))  # as sent: url.path drops \n and \t
        now = self._clock.time()
        with self._lock:
            last = self._last_logged.get(exc.reason)
            due = last is None or now - last >= LOG_EVERY
            if due:
                self._last_logged[exc.reason] = now
                quiet = self._quiet.pop(exc.reason, 0)
            else:
                self._quiet[exc.reason] = self._quiet.get(exc.reason, 0) + 1
        if due:
            more = f"; {quiet} more refused for this reason since the last line" if quiet else ""
            log.warning(
                "API refused %s %s from %s: %s (%d)%s",
                request.method,
                path,
                client,
                exc.reason,
                exc.status_code,
                more,
            )
        if audit and self._store is not None:
            detail = {
                "reason": exc.reason,
                "status": exc.status_code,
                "method": request.method,
                "path": path,
                "client": client,
            }
            self._audit(exc.principal or "anonymous", now, detail)

    def _audit(self, principal: str, now: float, detail: dict[str, Any]) -> None:
        with self._lock:
            if self._pending >= AUDIT_BACKLOG:
                full = True
            else:
                full = False
                self._pending += 1
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="api-refusal-audit")
                pool = self._pool
        if full:
            self._stats.unaudited()
            return
        future = pool.submit(self._write, principal, now, detail)
        future.add_done_callback(self._done)

    def _write(self, principal: str, now: float, detail: dict[str, Any]) -> None:
        assert self._store is not None
        try:
            self._store.audit("access_refused", principal, now, None, **detail)
        except redis.RedisError as exc:
            self._stats.unaudited()
            self._outage.failed(exc)
            return
        self._outage.ok()

    def _done(self, _future: Future[None]) -> None:
        with self._lock:
            self._pending -= 1

    def idle(self) -> bool:
        """True when no audit write is pending (for tests)."""
        with self._lock:
            return self._pending == 0
