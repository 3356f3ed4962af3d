"""A real `celery beat` with RedBeat, a real worker and the real exporter on a private Redis:
the entries' metrics move while beat runs; beat stopped, the beat-down and missed series move
and the beat alerts fire in promtool when fed exactly the values the exporter served; beat
restarted, they recover."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.beat_process import Beat
from tests.support.exporter_process import ExporterProcess, fresh_db
from tests.support.promql_names import load_module
from tests.support.redisserver import RedisServer

pytest.importorskip("redbeat")
pytestmark = pytest.mark.integration
gen = load_module("deploy/prometheus/generate.py", "ops_rules_generate")
PREFIX = "rbtest:"


def entry(exporter: ExporterProcess, metric: str, name: str, task: str) -> float | None:
    return exporter.value(metric, source="redbeat", entry=name, task=task)


def promtool_fires(series: dict[str, str], alert: str, labels: dict[str, str],
                   tmp: Path) -> None:  # fmt: skip
    """The alert fires at 10m on these 1m-step input series, with the beat variables set low
    enough for a 2-second entry (all else as shipped)."""
    rules = gen.build({"beat_missed_min_seconds": 1, "beat_missed_for": "0s",
                       "beat_down_for": "1m", "beat_failing_for": "0s"})  # fmt: skip
    for rule in rules["groups"][0]["rules"]:
        rule.pop("annotations", None)  # checked in tests/unit/promtool; here: does it fire
    (tmp / "rules.yml").write_text(yaml.safe_dump(rules))
    inputs = "\n".join(f"      - series: '{s}'\n        values: '{v}'" for s, v in series.items())
    want = ", ".join(f"{k}: {v}" for k, v in {"severity": "SEV", **labels}.items())
    doc = (f"rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n"
           f"    input_series:\n{inputs}\n    alert_rule_test:\n      - eval_time: 10m\n"
           f"        alertname: {alert}\n        exp_alerts:\n          - exp_labels: "
           f"{{{want}}}\n")  # fmt: skip
    severity = next(r for r in gen.build()["groups"][0]["rules"] if r.get("alert") == alert)
    doc = doc.replace("SEV", severity["labels"]["severity"])
    (tmp / "t.yml").write_text(doc)
    proc = subprocess.run([shutil.which("promtool") or "promtool", "test", "rules", "t.yml"],
                          cwd=tmp, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, doc + proc.stdout + proc.stderr


def series(name: str, labels: dict[str, str], values: list[float]) -> tuple[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{text}}}", " ".join(repr(float(v)) for v in values) + f" {values[-1]!r}x12"


TICK = {"source": "redbeat", "entry": "tick", "task": "tests.add"}
BROKEN = {"source": "redbeat", "entry": "broken", "task": "tests.fail_permanent"}
M = "celery_beat_entry_"


def key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_real_beat_stopped_and_restarted(
    private_redis: RedisServer, start_worker: Any, tmp_path: Path
) -> None:
    url = fresh_db(private_redis, 0)
    env = {
        "TEST_BROKER_URL": url,
        "TEST_BACKEND_URL": url,
        "TEST_REDBEAT_URL": url,
        "TEST_REDBEAT_PREFIX": PREFIX,
        "TEST_BEAT_EVERY": "2",
    }
    start_worker(env)
    args = ["--beat-redbeat-url", url, "--redbeat-key-prefix", PREFIX, "--beat-interval", "1",
            "--beat-grace", "2", "--beat-stale-after", "4"]  # fmt: skip
    exporter = ExporterProcess(url, args).wait_serving()
    beat = Beat(env)
    try:
        # running: tick succeeds, broken fails; both are dispatched every 2 s
        first = exporter.wait_value(M + "last_success_timestamp_seconds", _known, 30, **TICK)
        exporter.wait_value(
            M + "last_success_timestamp_seconds", lambda v: (v or 0) > (first or 0), 15, **TICK
        )
        exporter.wait_value(M + "last_failure_timestamp_seconds", _known, 15, **BROKEN)
        running = exporter.metrics()
        assert running[key("celery_beat_up", {"source": "redbeat"})] == 1
        assert running[key("celery_beat_lock_held", {"source": "redbeat"})] == 1
        assert running[key(M + "interval_seconds", TICK)] == 2.0
        assert running[key(M + "missed_runs", TICK)] == 0
        assert key(M + "last_success_timestamp_seconds", BROKEN) not in running

        beat.stop()
        assert "Releasing lock" in beat.output()
        exporter.wait_value("celery_beat_up", lambda v: v == 0, 10, source="redbeat")
        exporter.wait_value(M + "missed_runs", lambda v: (v or 0) >= 2, 15, **TICK)
        stopped = exporter.metrics()
        assert stopped[key("celery_beat_lock_held", {"source": "redbeat"})] == 0
        assert stopped[key(M + "overdue_seconds", TICK)] > 2.0

        # promtool, fed exactly the values the exporter served while running and once stopped
        def fed(name: str, labels: dict[str, str]) -> tuple[str, str]:
            k = key(name, labels)
            return series(name, {"job": "celery", "instance": "a", **labels},
                          [running[k], stopped[k]])  # fmt: skip

        where = {"job": "celery", "instance": "a"}
        up = {"source": "redbeat"}
        promtool_fires(dict([fed("celery_beat_up", up)]), "CeleryBeatDown", {**where, **up},
                       tmp_path)  # fmt: skip
        promtool_fires(
            dict([fed(M + "overdue_seconds", TICK), fed(M + "interval_seconds", TICK)]),
            "CeleryBeatEntryMissed", {**where, **TICK}, tmp_path,
        )  # fmt: skip
        promtool_fires(
            dict([fed(M + "last_dispatched_timestamp_seconds", BROKEN),
                  fed(M + "last_failure_timestamp_seconds", BROKEN)]),
            "CeleryBeatEntryNotSucceeding", {**where, **BROKEN}, tmp_path,
        )  # fmt: skip

        # restarted: the lock is back, the due entry is sent at once, nothing is overdue
        beat = Beat(env)
        exporter.wait_value("celery_beat_up", lambda v: v == 1, 20, source="redbeat")
        exporter.wait_value(M + "missed_runs", lambda v: v == 0, 15, **TICK)
        assert exporter.value("celery_exporter_beat_source_up", source="redbeat") == 1
        assert exporter.value("celery_exporter_beat_read_errors_total", source="redbeat") == 0
    finally:
        beat.stop()
        exporter.stop()
        os.unlink(beat.log.name)


def _known(value: float | None) -> bool:
    return value is not None
