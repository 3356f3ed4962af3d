"""Smoke run of the idle benchmark: a real worker, three exporters, figures produced.

Timings are never asserted (the full size is run by hand, its figures in bench/RESULTS.md);
only that every process ran and reported, and that the lean path was the one measured.
"""

from __future__ import annotations

import shutil

import pytest

from bench import idle_bench

pytestmark = pytest.mark.integration


def test_idle_bench_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    report = idle_bench.main(["--small"])
    assert set(report["processes"]) == set(idle_bench.OURS)
    for name, figures in report["processes"].items():
        assert figures["idle_ms_per_s"] >= 0, name
        assert figures["wakeups_per_s"] >= 0, name
    assert "wake-ups/s" in capsys.readouterr().out
