"""The daemon's timed jobs: at once, then on their phase; overruns skip, errors are logged."""

from __future__ import annotations

import logging

import pytest

from exporter.timedjobs import TimedJobs, next_due


def test_next_start_keeps_the_phase_and_skips_missed_runs() -> None:
    assert next_due(100.0, 10.0, 100.5) == 110.0
    assert next_due(100.0, 10.0, 110.0) == 120.0  # ended exactly at the next start: skipped
    assert next_due(100.0, 10.0, 134.0) == 140.0  # overran three starts: on to the fourth


class Play:
    """A job's thread loop on a fake clock: each wait moves the clock, runs take `took`."""

    def __init__(self, runs: int, took: float = 0.0, fail: bool = False) -> None:
        self.now = 0.0
        self.starts: list[float] = []
        self.waits: list[float] = []
        self.runs, self.took, self.fail = runs, took, fail
        self.jobs = TimedJobs(monotonic=lambda: self.now, wait=self.wait)

    def job(self) -> None:
        self.starts.append(self.now)
        self.now += self.took
        if self.fail:
            raise RuntimeError("a bug")

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return len(self.starts) >= self.runs  # True: stopping

    def play(self, interval: float) -> Play:
        self.jobs.add(self.job, interval, "job")
        self.jobs.run(self.jobs.jobs[0])
        return self


def test_a_job_runs_at_once_then_once_per_interval_with_one_wait_each() -> None:
    played = Play(runs=4, took=0.3).play(10.0)
    assert played.starts == [0.0, 10.0, 20.0, 30.0]
    assert played.waits == pytest.approx([9.7, 9.7, 9.7, 9.7])
    slow = Play(runs=3, took=25.0).play(10.0)  # a run longer than two intervals
    assert slow.starts == [0.0, 30.0, 60.0] and slow.waits == [5.0, 5.0, 5.0]


def test_a_failing_job_is_logged_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="exporter.timedjobs"):
        played = Play(runs=2, fail=True).play(5.0)
    assert played.starts == [0.0, 5.0]
    assert [r.getMessage() for r in caplog.records] == ["timed job job failed"] * 2


def test_intervals_must_be_positive_and_stop_ends_the_threads() -> None:
    jobs = TimedJobs()
    with pytest.raises(ValueError, match="interval must be positive"):
        jobs.add(lambda: None, 0, "never")
    ran: list[int] = []
    jobs.add(lambda: ran.append(1), 3600.0, "hourly")
    jobs.start()
    threads = list(jobs._threads)
    jobs.stop()  # wakes the thread from its hour-long sleep
    assert not any(t.is_alive() for t in threads)
    assert threads[0].name == "job-hourly"
