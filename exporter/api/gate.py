"""The bound on API work that calls Redis, and the Redis client that work uses.

FastAPI runs sync handlers on one anyio thread pool (40 threads) shared by every app in the
process, both listeners included. With the result backend stalled, 50 concurrent
`/api/tasks/<unknown id>` requests held all 40 threads for 30 s (10 s socket timeout, two
retries) and `/metrics` and `/-/healthy` queued behind them. So:

- `/metrics`, `/`, `/-/healthy` and `/-/ready` are `async def` handlers that read memory only
  and run on the event loop: no pool at all (exporter/http.py).
- API work that calls Redis runs here, on the API's own `--api-max-concurrent` threads. A
  request beyond that bound is answered 503 at once, with `Retry-After`, and counted in
  `celery_exporter_api_overloaded_total`. A slot is held until the thread's call returns, not
  until the client gives up, so an abandoned request cannot let more work pile up.
- The API's Redis client fails fast: `API_REDIS_TIMEOUT` seconds to connect and per reply,
  no retry. A healthy Redis answers a GET on loopback in ~0.1 ms, an MGET of 250 results in
  ~0.3 ms: 2 s is four orders of magnitude of headroom and still frees a slot quickly.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import redis
from fastapi import HTTPException
from redis.backoff import NoBackoff
from redis.retry import Retry

from exporter.apicounters import ApiCounters
from exporter.backend_redis import backend_client
from exporter.config import Config

T = TypeVar("T")
API_REDIS_TIMEOUT = 2.0  # seconds: connect, and each reply, for the API's Redis calls


def api_client(config: Config) -> redis.Redis | None:
    """The result-backend client of the API and the plan store, or None without a backend."""
    if config.backend_url is None:
        return None
    return backend_client(
        config,
        socket_timeout=API_REDIS_TIMEOUT,
        socket_connect_timeout=API_REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
    )


class ApiGate:
    """At most `limit` Redis-calling API calls at once, on threads of their own."""

    def __init__(self, limit: int, stats: ApiCounters) -> None:
        self.limit = limit
        self._stats = stats
        self._lock = threading.Lock()
        self._busy = 0
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="api-redis")

    @property
    def busy(self) -> int:
        with self._lock:
            return self._busy

    async def run(self, fn: Callable[[], T]) -> T:
        """fn() on a gate thread; HTTPException(503) at once when every slot is taken."""
        with self._lock:
            if self._busy >= self.limit:
                full = True
            else:
                full = False
                self._busy += 1
        if full:
            self._stats.overloaded()
            raise HTTPException(
                503,
                f"the API is busy: {self.limit} calls to the result backend are already in "
                "flight (--api-max-concurrent); retry shortly",
                headers={"Retry-After": str(math.ceil(API_REDIS_TIMEOUT))},
            )
        try:
            future = self._pool.submit(fn)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._busy -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
