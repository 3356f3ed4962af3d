"""Smoke run of the scrape-size benchmark: two real exporters fed real event messages, both
scraped with gzip; figures produced and both paths serve the same page. Timings are never
asserted (the full size is run by hand, its figures in bench/RESULTS.md)."""

from __future__ import annotations

import shutil

import pytest

from bench import scrape_size_bench

pytestmark = pytest.mark.integration


def test_scrape_size_bench_small_run() -> None:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    result = scrape_size_bench.run(
        names=10, queues=2, workers=3, scrapes=5, old_scrapes=3, changes=3
    )
    ready, old = result["ready"], result["per_scrape"]
    for figures in (ready, old):
        assert figures["samples"] > 100
        assert 0 < figures["wire_bytes"] < figures["plain_bytes"] / 4  # gzip on the wire
        for key in ("p50_ms", "p90_ms", "p99_ms", "cpu_ms_per_scrape"):
            assert figures[key] >= 0
    # the same page either way (the served tail differs only in its values)
    assert abs(ready["samples"] - old["samples"]) <= 1, result["series_only_in"]
    assert ready["renders_during_trickle"] >= 1 and ready["render_cpu_ms"] > 0
    assert result["api"]["/api/sitrep"]["status"] == 200
