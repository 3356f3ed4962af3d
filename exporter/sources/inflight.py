"""`InFlight`: one Redis command sent ahead while the caller works on the previous reply.

The reconcile alternates Redis round trips (SCAN, MGET) with CPU work (decoding and folding
the values). Sent one after the other, Redis idles while we fold and we idle while Redis
reads. Here the next command is written to the socket before the current reply is folded,
so both run at once, without a thread (a fetching thread would wait for the GIL at every
reply). Exactly one command is outstanding at a time, so Redis still runs each alone and
serves other clients between them: the stall a command causes is unchanged.

Uses one connection of the client's pool for the whole pass. A connection error on the
raw connection falls back to the client's own call for that command (with its retries), so
a blip costs a reconnect, not the pass. A pass ended early (stop, exception) with a reply
still unread closes the connection instead of handing it back out of step.
"""

from __future__ import annotations

from typing import Any

import redis

_RECOVERABLE = (redis.ConnectionError, redis.TimeoutError, OSError)


class InFlight:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._pool: Any = getattr(client, "connection_pool", None)
        self._conn: Any = None
        self._pending: tuple[Any, ...] | None = None
        self.fallbacks = 0  # commands answered through the client after a connection error

    def send(self, *args: Any) -> None:
        """Send a command; `result()` must be called before the next `send`."""
        if self._pending is not None:
            raise RuntimeError("a reply is still outstanding")
        self._pending = args
        if self._pool is None:
            return
        try:
            if self._conn is None:
                self._conn = self._pool.get_connection()
            self._conn.send_command(*args)
        except _RECOVERABLE:
            self._drop()

    def result(self) -> Any:
        """The reply of the command sent last (raw form: SCAN gives [cursor, keys])."""
        args, self._pending = self._pending, None
        if args is None:
            raise RuntimeError("nothing was sent")
        if self._conn is not None:
            try:
                return self._conn.read_response()
            except _RECOVERABLE:
                self._drop()
        self.fallbacks += 1
        return self._client.execute_command(*args)

    def close(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        if self._pending is not None:
            conn.disconnect()  # an unread reply would answer the pool's next user
        self._pending = None
        self._pool.release(conn)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()
            self._pool.release(conn)
