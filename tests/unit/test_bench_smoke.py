"""Smoke run of the scrape benchmark: real Poller, real HTTP app under uvicorn, slow inspect."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import scrape_bench


def test_scrape_bench_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    result = scrape_bench.main(
        ["--small", "--scrapes", "60", "--in-scrape", "2", "--inspect-delay", "0.3"]
    )
    snap, inline = result["snapshot"], result["in_scrape"]
    assert snap["n"] == 60 and inline["n"] == 2
    # A scrape never waits for the inspect in flight; the inline variant always does.
    assert snap["p50"] < 0.1
    assert inline["p50"] >= 0.3
    assert result["ratio_p50"] > 3
    # What was served is the poller's view of the fake cluster, not an empty registry.
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(result["body"])
        for s in family.samples
    }
    assert samples[("celery_workers", ())] == 3
    assert samples[("celery_tasks_active", ())] == 12
    assert samples[("celery_queue_length", (("queue_name", "reports"),))] == 50
    out = capsys.readouterr().out
    assert "snapshot (this exporter)" in out and "p50 ratio" in out
