"""Every dashboard query and rule expression names only metrics the exporter really exposes
(the golden /metrics files once they exist, else the contract list), recording rules defined
in the shipped rules, or series Prometheus makes itself."""

from __future__ import annotations

from pathlib import Path

from tests.support.promql_names import (
    PROMETHEUS_SERIES,
    board_queries,
    dashboards,
    exposed_names,
    load_module,
    metric_names,
    recorded_names,
    rules_doc,
)


def known() -> tuple[set[str], str]:
    names, source = exposed_names()
    return names | recorded_names() | PROMETHEUS_SERIES, source


def test_extractor_finds_metrics_not_functions_or_labels() -> None:
    expr = ('histogram_quantile(0.9, sum by (le, name) (rate(celery_task_runtime_seconds_bucket'
            '{job=~"$job", name="x"}[$__rate_interval]))) > on (job) group_left '
            'celery:tasks_success_ratio:5m offset 5m or vector(1e3) - time()')  # fmt: skip
    assert metric_names(expr) == {
        "celery_task_runtime_seconds_bucket",
        "celery:tasks_success_ratio:5m",
    }
    assert metric_names('label_values(celery_queue_length{job=~"$job"}, queue_name)') == {
        "celery_queue_length"
    }


def test_dashboard_queries_name_real_metrics() -> None:
    names, source = known()
    for file, board in dashboards().items():
        for expr in board_queries(board):
            unknown = metric_names(expr) - names
            assert not unknown, f"{file}: {sorted(unknown)} not exposed (checked {source}): {expr}"


def test_rule_expressions_name_real_metrics() -> None:
    names, source = known()
    for rule in rules_doc():
        unknown = metric_names(rule["expr"]) - names
        label = rule.get("alert") or rule.get("record")
        assert not unknown, f"{label}: {sorted(unknown)} not exposed (checked {source})"


def test_allowed_empty_list_names_real_metrics() -> None:
    gen = load_module("grafana/generate.py", "ops_grafana_generate")
    names, source = known()
    assert set(gen.ALLOWED_EMPTY) <= names, source


def test_every_contract_family_is_on_a_dashboard() -> None:
    # Not every metric needs a panel, but each family the dashboards skip is listed here,
    # so a new metric is a conscious choice.
    not_shown = {
        "celery_worker_up",
        "celery_worker_tasks_reserved",
        "celery_worker_tasks_scheduled",
        "celery_worker_pool_processes",
        "celery_worker_tasks_processed_total",
        "celery_worker_last_seen_timestamp_seconds",
        "celery_task_success_ratio",
        "celery_exporter_reconcile_duration_seconds",
    }
    queried: set[str] = set()
    for board in dashboards().values():
        for expr in board_queries(board):
            queried |= metric_names(expr)
    contract = Path(__file__).resolve().parent / "metric_contract.txt"
    families = {
        line.split()[0]
        for line in contract.read_text().splitlines()
        if line.strip() and not line.startswith(("#", "["))
    }
    shown = {f for f in families if f in queried or f + "_bucket" in queried}
    assert families - shown - not_shown == set()
