"""Smoke run of the live-cluster benchmark: a real worker, four exporters, figures produced.

Only that every figure is there and the counts are exact; timings are never asserted (the
full size is run by hand, its figures in bench/RESULTS.md).
"""

from __future__ import annotations

import shutil

import pytest

from bench import live_bench

pytestmark = pytest.mark.integration


def test_live_bench_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    report = live_bench.main(["--small"])
    procs = report["processes"]
    assert set(procs) == set(live_bench.OURS)
    assert report["truth"] == {"succeeded": 36, "failed": 4, "retried": 4}
    for name, figures in procs.items():
        for key in ("idle_ms_per_s", "cpu_s", "cpu_ms_per_task", "rss_mb"):
            assert figures[key] >= 0, (name, key)
        assert figures["rss_mb"] > 0
        if name != "ours: both off":
            assert figures["counts"] == report["truth"], name
    assert "ms/task" in capsys.readouterr().out


def test_live_bench_beside_a_baseline_commit() -> None:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    report = live_bench.main(["--small", "--only-full", "--baseline", "HEAD", "--threads", "--gc"])
    full = next(iter(live_bench.OURS))
    assert set(report["processes"]) == {full, f"{full} @HEAD"}
    for name, figures in report["processes"].items():
        assert figures["counts"] == report["truth"], name
        # Both trees ran with the probe (start-up collects), and each thread was read.
        assert figures["gc_logged"] > 0 and isinstance(figures["gc"], dict), name
        assert sum(ms for _, ms, _ in figures["threads"]) > 0, name


def test_live_bench_with_a_prefilled_full_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--prefill`: the load window starts with ours' ledger full, so every task evicts one
    entry; counts are still what the window sent, not the stored results read at start."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    monkeypatch.setenv("CE_LEDGER_MAX_TASKS", "1000")
    # Stored results carry no task name: counted at once, not after 5 s (the bench waits).
    monkeypatch.setenv("CE_LABEL_GRACE", "0")
    report = live_bench.main(["--small", "--only-full", "--prefill", "10000"])
    figures = report["processes"][next(iter(live_bench.OURS))]
    assert figures["counts"] == report["truth"]
    assert figures["ledger"]["entries_start"] == figures["ledger"]["entries_end"] == 1000
    assert figures["ledger"]["evictions"] == report["tasks"]
    assert figures["ledger"]["reconcile_runs"] == 0
    assert figures["ledger"]["label_pending_start"] == 0
    assert figures["cpu_s_before"] > 0
