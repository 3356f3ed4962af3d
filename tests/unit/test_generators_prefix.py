"""Rules (plain and PrometheusRule) and dashboards generated for a non-default
`--metric-prefix`: promtool accepts the rules, and every metric name they read is one the
exporter shows on /metrics when run with that prefix (no `celery_` name left over)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.clock import FakeClock
from exporter.collectors import build_registry
from tests.support.beat import beat_scenario
from tests.support.promql_names import PROMETHEUS_SERIES, board_queries, load_module, metric_names

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "myapp_"
rules_gen = load_module("deploy/prometheus/generate.py", "ops_rules_generate")
k8s_gen = load_module("deploy/kubernetes/prometheusrule.py", "ops_k8s_rule_generate")
grafana_gen = load_module("grafana/generate.py", "ops_grafana_generate")


def shown_with_prefix() -> set[str]:
    """Names /metrics shows with --metric-prefix myapp_: the prefix golden (every task,
    worker, queue and exporter family) and the beat scenario rendered with the prefix."""
    texts = [(ROOT / "tests" / "golden" / "options" / "prefix_static.prom").read_text()]
    state = beat_scenario(FakeClock())
    state.config = state.config.replace(metric_prefix=PREFIX)
    texts.append(generate_latest(build_registry(state)).decode())
    names: set[str] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            names |= {s.name for s in family.samples}
    assert names and all(n.startswith(PREFIX) for n in names)
    return names


def check_names(exprs: list[str], recorded: set[str]) -> None:
    shown = shown_with_prefix()
    read: set[str] = set()
    for expr in exprs:
        names = metric_names(expr) - recorded - PROMETHEUS_SERIES
        assert names <= shown, f"{sorted(names - shown)} not on /metrics: {expr}"
        read |= names
    assert len(read) > 10 and not any(n.startswith("celery_") for n in read), read


def promtool_check(path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: `make deps` installs Debian's prometheus package")
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_for_a_prefix(tmp_path: Path) -> None:
    out = tmp_path / "rules.yml"
    assert rules_gen.main(["--metric-prefix", PREFIX, "-o", str(out)]) == 0
    promtool_check(out)
    rules = [r for g in yaml.safe_load(out.read_text())["groups"] for r in g["rules"]]
    recorded = {r["record"] for r in rules if "record" in r}
    assert recorded and all(n.startswith("celery:") for n in recorded)
    check_names([r["expr"] for r in rules], recorded)
    assert rules_gen.render({"metric_prefix": PREFIX}) == out.read_text()  # --set does the same


def test_prometheusrule_for_a_prefix(tmp_path: Path) -> None:
    out = tmp_path / "rule.yaml"
    assert k8s_gen.main(["--metric-prefix", PREFIX, "-o", str(out)]) == 0
    doc = yaml.safe_load(out.read_text())
    assert doc["kind"] == "PrometheusRule"
    plain = tmp_path / "groups.yml"
    plain.write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}))
    promtool_check(plain)
    expected = yaml.safe_load(rules_gen.render({"metric_prefix": PREFIX}))["groups"]
    assert doc["spec"]["groups"] == expected


def test_dashboards_for_a_prefix(tmp_path: Path) -> None:
    assert grafana_gen.main(["--metric-prefix", PREFIX, "--out-dir", str(tmp_path)]) == 0
    boards = [yaml.safe_load(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert len(boards) == 3
    recorded = {r["record"] for g in yaml.safe_load(rules_gen.render())["groups"]
                for r in g["rules"] if "record" in r}  # fmt: skip
    check_names([q for board in boards for q in board_queries(board)], recorded)


def test_default_prefix_leaves_the_shipped_files_as_they_are() -> None:
    assert (
        rules_gen.render({"metric_prefix": "celery_"})
        == (ROOT / "deploy" / "prometheus" / "celery-rules.yml").read_text()
    )
    assert grafana_gen.render_all(prefix="celery_") == grafana_gen.render_all()
