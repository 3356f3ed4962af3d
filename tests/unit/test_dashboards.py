"""The generated Grafana dashboards: committed JSON is the generator's output, panels carry
units, descriptions and the shared variables, and provisioning points at the files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.support.promql_names import (
    ROOT,
    board_queries,
    dashboards,
    load_module,
    metric_names,
    unselected,
)

gen = load_module("grafana/generate.py", "ops_grafana_generate")


def test_committed_dashboards_match_generator() -> None:
    rendered = gen.render_all()
    committed = {p.name: p.read_text() for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert committed == rendered, "run: python grafana/generate.py"
    assert gen.main(["--check"]) == 0


def test_generator_check_notices_a_stale_file(tmp_path: Path) -> None:
    assert gen.main(["--out-dir", str(tmp_path)]) == 0
    (tmp_path / "celery-task.json").write_text("{}")
    assert gen.main(["--check", "--out-dir", str(tmp_path)]) == 1


def test_three_dashboards_with_unique_uids() -> None:
    boards = dashboards()
    assert set(boards) == {"celery-overview.json", "celery-task.json", "celery-exporter.json"}
    assert len({b["uid"] for b in boards.values()}) == 3


def test_variables_datasource_job_instance() -> None:
    for name, board in dashboards().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", name
        assert {"job", "instance"} <= set(variables), name
        assert variables["instance"]["includeAll"] and variables["instance"]["allValue"] == ".*"


def test_panels_have_units_descriptions_and_use_the_variables() -> None:
    for name, board in dashboards().items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            where = f"{name}: {panel['title']}"
            assert panel["description"].strip(), where
            assert panel["fieldConfig"]["defaults"]["unit"], where
            assert panel["datasource"]["uid"] == "${datasource}", where
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, where
            for target in panel["targets"]:
                expr = target["expr"]
                # Every range over raw series follows the scrape interval via $__rate_interval;
                # only the precomputed recording rules have fixed windows in their names.
                for rng in re.findall(r"\[([^\]]+)\]", expr):
                    assert rng == "$__rate_interval", f"{where}: [{rng}] in {expr}"
                if "celery_" in expr or "up{" in expr or "scrape_" in expr:
                    assert 'job=~"$job"' in expr, f"{where}: no job filter in {expr}"


@pytest.mark.parametrize("selector", ['job="celery"', 'job="celery-eu", cluster=~"eu.*"'])
def test_every_query_carries_the_selector(selector: str, tmp_path: Path) -> None:
    """Another Celery exporter in the same Prometheus (same metric names) never shows up."""
    assert gen.main(["--out-dir", str(tmp_path), "--selector", selector]) == 0
    boards = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    queries = [q for board in boards.values() for q in board_queries(board)]
    assert len(boards) == 3 and len(queries) > 50
    for query in queries:
        if metric_names(query):
            assert unselected(query, selector) == [], query
    if selector == 'job="celery"':  # the shipped files are the default selector's
        assert {n: json.loads(t) for n, t in gen.render_all().items()} == boards


def test_overview_covers_the_issue_list() -> None:
    board = dashboards()["celery-overview.json"]
    text = "\n".join(board_queries(board))
    for needle in (
        "celery:tasks_success_ratio:5m",
        "vector($slo)",
        "celery_task_failed_total",
        "celery_task_exceptions_total",
        "celery_queue_length",
        "celery_queue_oldest_message_age_seconds",
        "celery_workers",
        "celery_task_runtime_seconds_bucket",
        "celery_task_queue_wait_seconds_bucket",
    ):
        assert needle in text, needle
    for state in gen.STATES:
        assert f"celery_task_{state}_total" in text


def test_provisioning_files() -> None:
    prov = ROOT / "grafana" / "provisioning"
    dash = yaml.safe_load((prov / "dashboards" / "celery.yml").read_text())
    assert dash["apiVersion"] == 1 and dash["providers"][0]["type"] == "file"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"
