"""`Background`: the one thread of a task source or service, started once and stopped with a
join, and its retry loop (a `Backoff` between attempts, an outage logged once by `OutageLog`).

Every source and the keeper use it instead of handling `threading.Thread` themselves:
`start` is idempotent and returns at once, `stop` sets `stopping`, runs the owner's wake-up
hook (e.g. to interrupt a blocking wait) and joins the thread with a timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from exporter.outage import Backoff, OutageLog


class Background:
    def __init__(
        self,
        name: str,
        target: Callable[[], None],
        join_timeout: float = 10.0,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.stopping = threading.Event()
        self._target = target
        self._join_timeout = join_timeout
        self._on_stop = on_stop
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._target, name=self.name, daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        """Started and not stopped yet."""
        return self._thread is not None

    def stop(self) -> None:
        self.stopping.set()
        if self._on_stop is not None:
            self._on_stop()
        if self._thread is not None:
            self._thread.join(self._join_timeout)
            self._thread = None

    def retry(
        self,
        attempt: Callable[[], None],
        outage: OutageLog,
        backoff: Backoff,
        *,
        until: Callable[[], bool] | None = None,
        on_failure: Callable[[Exception], None] | None = None,
        describe: Callable[[Exception], object] = lambda exc: exc,
    ) -> None:
        """Call `attempt` until stopping (or `until()` holds). A return is a success: the
        backoff resets and the outage (if any) ends. An exception is a failure: logged once
        per outage (`describe` words it), `on_failure` reports it, then the next backoff
        delay is waited out (cut short by `stop`)."""
        while not self.stopping.is_set() and not (until is not None and until()):
            try:
                attempt()
            except Exception as exc:  # any failure: report, back off, try again
                delay = backoff.next()
                outage.failed(describe(exc), delay)
                if on_failure is not None:
                    on_failure(exc)
                self.stopping.wait(delay)
                continue
            backoff.reset()
            outage.ok()
