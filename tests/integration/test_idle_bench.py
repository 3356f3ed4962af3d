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
    assert set(report["processes"]) == {name for name, _args, _kombu in idle_bench.OURS.values()}
    for name, figures in report["processes"].items():
        assert figures["idle_ms_per_s"] >= 0, name
        assert figures["wakeups_per_s"] >= 0, name
    assert "wake-ups/s" in capsys.readouterr().out


def test_idle_bench_beside_a_baseline_per_thread(capsys: pytest.CaptureFixture[str]) -> None:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    report = idle_bench.main(["--small", "--only", "lean", "--baseline", "HEAD", "--threads"])
    lean = idle_bench.OURS["lean"][0]
    assert set(report["processes"]) == {lean, f"{lean} @HEAD"}
    for name, figures in report["processes"].items():
        rows = figures["threads"]
        assert rows and all(cpu >= 0 and woke >= 0 for _thread, cpu, woke in rows), name
    assert "per thread" in capsys.readouterr().out
