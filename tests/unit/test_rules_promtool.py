"""The shipped Prometheus rules: promtool check + unit tests, generator freshness, and the
promises the runbook makes (every alert has severity, summary, templated description, a
runbook section, and a firing and a non-firing promtool case)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.support.promql_names import metric_names, unselected

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "celery-rules.yml"
RULE_TESTS = ROOT / "tests" / "unit" / "promtool" / "celery-rules.test.yml"


def load_module(rel: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gen = load_module("deploy/prometheus/generate.py", "ops_rules_generate")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed (apt-get install prometheus; make deps does it)")
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def test_promtool_check_rules() -> None:
    proc = run(promtool(), "check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules())} rules found" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    proc = run(promtool(), "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_committed_rules_match_generator() -> None:
    assert RULES.read_text() == gen.render(), "run: python deploy/prometheus/generate.py"


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    # every promtool file here (the beat alerts are tested in beat-rules.test.yml)
    cases = [c for f in RULE_TESTS.parent.glob("*.test.yml") for c in yaml.safe_load(
        f.read_text())["tests"]]  # fmt: skip
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - firing == set(), "alerts without a firing test"
    assert names - quiet == set(), "alerts without a non-firing test"


def test_every_recording_rule_is_tested() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    tested = {
        check["expr"].strip() for case in doc["tests"] for check in case.get("promql_expr_test", [])
    }
    records = {r["record"] for r in rules() if "record" in r}
    assert records - tested == set()


def test_alert_metadata_and_runbook() -> None:
    readme = (ROOT / "README.md").read_text()
    runbook = readme.split("<!-- section: runbook -->", 1)[1].split("<!-- /section: runbook -->")[0]
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning", "info"), name
        notes = alert["annotations"]
        assert "{{" not in notes["summary"], f"{name}: the summary must be static"
        assert "{{ $labels." in notes["description"], f"{name}: description is not templated"
        assert notes["runbook_url"].endswith("#" + name.lower())
        assert f"### {name}\n" in runbook, f"{name}: no runbook section in the README"


def test_every_threshold_is_documented() -> None:
    # The README's table is `generate.py --list`: a changed default or a new variable shows.
    readme = (ROOT / "README.md").read_text()
    for row in gen.variables_table():
        assert row in readme, f"README threshold table is stale, missing: {row}"


def test_unknown_variable_is_refused() -> None:
    with pytest.raises(KeyError, match="slo_typo"):
        gen.render({"slo_typo": 0.9})


OVERRIDE_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - name: per-queue worker minimum, and a queue whose series never appeared
    interval: 1m
    input_series:
      - series: 'celery_queue_workers{job="prod",instance="a",queue_name="critical"}'
        values: '2x10'
      - series: 'celery_queue_workers{job="prod",instance="a",queue_name="bulk"}'
        values: '1x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: CeleryQueueTooFewWorkers
        exp_alerts:
          - exp_labels: {severity: critical, job: prod, queue_name: critical}
            exp_annotations:
              summary: A Celery queue has fewer workers than expected
              description: 'Queue critical (job prod) has 2 workers up, fewer than expected.'
              runbook_url: https://runbooks.example/celery#celeryqueuetoofewworkers
          - exp_labels: {severity: critical, job: prod, queue_name: reports}
            exp_annotations:
              summary: A Celery queue has fewer workers than expected
              description: 'Queue reports (job prod) has 0 workers up, fewer than expected.'
              runbook_url: https://runbooks.example/celery#celeryqueuetoofewworkers
  - name: a stricter SLO and no for-duration page sooner
    interval: 1m
    input_series:
      - series: 'celery_task_succeeded_total{job="prod",instance="a",name="t",queue_name="q"}'
        values: '0+97x30'
      - series: 'celery_task_failed_total{job="prod",instance="a",name="t",queue_name="q"}'
        values: '0+3x30'
    alert_rule_test:
      - eval_time: 10m
        alertname: CeleryTaskSuccessRateBurnFast
        exp_alerts:
          - exp_labels: {severity: critical, job: prod}
            exp_annotations:
              summary: Celery task success rate is burning the error budget (fast burn)
              description: >-
                Job prod: 3% of tasks failed over the last 1h (limit 0.0144 for SLO 0.999,
                14.4x burn).
              runbook_url: https://runbooks.example/celery#celerytasksuccessrateburnfast
"""


def test_overridden_variables_change_the_rules(tmp_path: Path) -> None:
    text = gen.render({
        "job": "prod", "slo": 0.999, "fast_burn_for": "0s",
        "queue_min_workers": {"critical": 3, "reports": 1},
        "runbook_url": "https://runbooks.example/celery",
    })  # fmt: skip
    (tmp_path / "rules.yml").write_text(text)
    (tmp_path / "t.yml").write_text(OVERRIDE_TESTS)
    assert 'up{job="prod"}' in text
    proc = run(promtool(), "test", "rules", "t.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


SELECTOR_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - name: any label matcher selects; the aggregations keep its label; other clusters stay out
    interval: 1m
    input_series:
      - series: 'celery_task_succeeded_total{job="celery",cluster="eu1",name="t",queue_name="q"}'
        values: '0+60x120'
      - series: 'celery_task_failed_total{job="celery",cluster="eu1",name="t",queue_name="q"}'
        values: '0x60 30+30x60'
      - series: 'celery_task_succeeded_total{job="celery",cluster="us1",name="t",queue_name="q"}'
        values: '0+60x120'
      - series: 'celery_task_failed_total{job="celery",cluster="us1",name="t",queue_name="q"}'
        values: '0x60 30+30x60'
    alert_rule_test:
      - eval_time: 90m
        alertname: CeleryTaskSuccessRateBurnFast
        exp_alerts:
          - exp_labels: {severity: critical, job: celery, cluster: eu1}
            exp_annotations:
              summary: Celery task success rate is burning the error budget (fast burn)
              description: >-
                Job celery: 20% of tasks failed over the last 1h (limit 0.144 for SLO 0.99,
                14.4x burn).
              runbook_url: README.md#celerytasksuccessrateburnfast
"""


def test_selector_takes_any_label_matcher(tmp_path: Path) -> None:
    text = gen.render({"selector": 'cluster="eu1"'})
    (tmp_path / "rules.yml").write_text(text)
    (tmp_path / "t.yml").write_text(SELECTOR_TESTS)
    proc = run(promtool(), "test", "rules", "t.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("sel", ['job="celery"', 'cluster="eu1", env!~"dev|test"'])
def test_every_expression_carries_the_selector(sel: str) -> None:
    doc = yaml.safe_load(gen.render({} if sel == 'job="celery"' else {"selector": sel}))
    exprs = [r["expr"] for g in doc["groups"] for r in g["rules"]]
    assert exprs
    for expr in exprs:
        assert metric_names(expr), expr
        assert unselected(expr, sel) == [], expr
    # The check itself notices a selector-less series.
    assert unselected("sum(rate(celery_task_failed_total[5m]))", sel) == [
        "celery_task_failed_total"
    ]


def test_generator_cli_check_detects_a_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "rules.yml"
    assert gen.main(["-o", str(out), "--set", "slo=0.95"]) == 0
    assert "0.95" in out.read_text()
    assert gen.main(["-o", str(out), "--check", "--set", "slo=0.95"]) == 0
    assert gen.main(["-o", str(out), "--check"]) == 1
