"""`TimedJobs`: the daemon's timed jobs (the poll, each service's `jobs()`), each on a thread
of its own that sleeps until its next run.

APScheduler ran them before: its scheduler thread woke for each due job, did its datetime and
job-store bookkeeping, and handed the job to a pool thread, which woke in turn. On this 2-core
VM a thread wake-up alone costs 50-100 us of CPU, and an idle exporter ran three or four jobs
every 10 s: the scheduler and its pool were ~0.35 ms/s of an idle exporter's ~1.2 ms/s
(bench/idle_bench.py --threads, bench/RESULTS.md). Here a run is one wake-up of its own thread.

Each job runs at once when started, then every `interval` seconds on the same phase. A run
that overran skips the runs it missed: never two runs of a job at once, never a burst to catch
up (APScheduler's `max_instances=1, coalesce=True`). A job that raises is logged and runs
again next time. `stop` wakes every thread at once and waits a little for runs in progress
(the threads are daemon threads: a stuck run never blocks the process's exit).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)
JOIN_TIMEOUT = 5.0  # seconds `stop` waits for runs in progress, all jobs together


@dataclass(frozen=True)
class Job:
    func: Callable[[], None]
    interval: float  # seconds between the starts of two runs
    name: str


def next_due(due: float, interval: float, now: float) -> float:
    """The start after a run that was due at `due` and ended at `now`: one interval later,
    or, when the run overran, the first start of that phase still ahead (missed runs are
    skipped, not caught up)."""
    due += interval
    if due <= now:
        due += interval * ((now - due) // interval + 1)
    return due


class TimedJobs:
    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self._stopping = threading.Event()
        self._now = monotonic
        # Sleeps up to the seconds given; True when stopping (tests drive it without threads).
        self._wait = wait or self._stopping.wait
        self.jobs: list[Job] = []
        self._threads: list[threading.Thread] = []

    def add(self, func: Callable[[], None], interval: float, name: str) -> None:
        if interval <= 0:
            raise ValueError(f"job {name}: interval must be positive, got {interval}")
        self.jobs.append(Job(func, interval, name))

    def start(self) -> None:
        for job in self.jobs:
            thread = threading.Thread(
                target=self.run, args=(job,), name=f"job-{job.name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def run(self, job: Job) -> None:
        """The loop of one job's thread: run, sleep until the next start, until stopped."""
        due = self._now()
        while not self._stopping.is_set():
            try:
                job.func()
            except Exception:  # a bug, not an outage (jobs handle those): log, run again
                log.exception("timed job %s failed", job.name)
            due = next_due(due, job.interval, self._now())
            if self._wait(max(0.0, due - self._now())):
                return
