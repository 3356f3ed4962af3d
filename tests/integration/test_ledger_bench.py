"""The ledger benchmark runs end to end at tiny sizes (its figures are not judged here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_ledger_bench_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    from bench import ledger_bench

    out = tmp_path / "bench.json"
    monkeypatch.setenv("BENCH_JSON", str(out))
    argv = [
        "--small",
        "--events",
        "3000",
        "--results",
        "500",
        "--reconcile",
        "500",
        "--rss",
        "2000",
    ]
    assert ledger_bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["events"]["events"] == 3000
    assert report["results"]["counted"] == 500
    assert report["reconcile"]["counted"] == 500
    assert report["rss"]["entries"] == 2000


def test_events_e2e_bench_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real broker -> each consumer (lean and Celery's) -> ledger: every event is counted."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    from bench import events_e2e_bench

    out = tmp_path / "e2e.json"
    monkeypatch.setenv("BENCH_JSON", str(out))
    assert events_e2e_bench.main(["--small", "--tasks", "200"]) == 0
    runs = json.loads(out.read_text())
    assert [(r["events_per_message"], r["consumer"]) for r in runs] == [
        (1, "auto"),
        (1, "celery"),
        (24, "auto"),
        (24, "celery"),
    ]
    for r in runs:
        assert r["events"] == 600 and r["ledger_task_events"] == 600
        assert r["cpu_seconds"] > 0
        want = "RedisEventStream" if r["consumer"] == "auto" else "EventStream"
        assert r["consumer_class"] == want


def test_ledger_memory_bench_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both workloads in their own processes, with the per-part walk of the tables."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    from bench import ledger_memory

    out = tmp_path / "memory.json"
    monkeypatch.setenv("BENCH_JSON", str(out))
    argv = ["--small", "--tasks", "2000", "--reconcile", "500", "--parts", "--rate", "1000"]
    assert ledger_memory.main(argv) == 0
    report = json.loads(out.read_text())
    tasks, reconcile = report["tasks"], report["reconcile"]
    assert tasks["entries"] == 2000 and tasks["held"] == 2000  # (2 s of tasks, 5 s grace)
    assert reconcile["counted"] == 500 and reconcile["entries"] == 500
    for run in (tasks, reconcile):
        assert run["rss_mb"] > run["rss_mb_imports"] > 0
        parts = run["parts"]
        assert parts["entry_objects"] > 0 and parts["task_id_keys"] > 0
        assert parts["pending_store"] > 0 and parts["pymalloc_live_blocks_mb"] > 0
