"""Building blocks of the Grafana dashboards: panel grid layout, shared variables, query helpers,
and the list of metrics whose panels may legitimately be empty. Used by grafana/generate.py."""

from __future__ import annotations

from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
DEFAULT_SELECTOR = 'job="celery"'
_selector = [DEFAULT_SELECTOR]


def use_selector(selector: str) -> None:
    """The label matchers every query carries (generate.py --selector), so a Prometheus that
    also scrapes another Celery exporter (same metric names) never mixes its series in."""
    _selector[0] = selector


def base_sel() -> str:
    return _selector[0]


def rsel(extra: str = "") -> str:
    """Matchers of a recording rule's series: kept per job, so no instance variable."""
    return f'{_selector[0]}, job=~"$job"' + (f", {extra}" if extra else "")


def sel(extra: str = "") -> str:
    """Matchers of a panel query: the selector, then the dashboard's job/instance variables."""
    return f'{_selector[0]}, job=~"$job", instance=~"$instance"' + (f", {extra}" if extra else "")


# Series that legitimately have no data on a healthy cluster: a panel query naming one of these
# may come back empty (the e2e test checks every other query returns data).
ALLOWED_EMPTY: dict[str, str] = {
    "celery_task_revoked_total": "nothing was revoked",
    "celery_task_rejected_total": "nothing was rejected",
    "celery_tasks_stuck": "no task ran past --stuck-after (series appear per name when stuck)",
    "celery_task_retried_total": "no task retried",
    "celery_exporter_results_skipped_total": "every result record could be decoded",
    "celery_exporter_parse_errors_total": "no undecodable message",
    "celery_exporter_ledger_evictions_total": "the ledger never reached --ledger-max-tasks",
    "celery_exporter_ledger_evicted_ids_dropped_total": "evicted ids stayed within their bound",
    "celery_exporter_label_overflow_total": "no label hit --max-task-names/--max-exception-types",
    "celery_exporter_inspect_timeouts_total": "every inspect broadcast was answered",
    "celery_exporter_api_requests_total": "the API was not called",
    "celery_exporter_plans_total": "no fix-it plan was made",
    "celery_exporter_actions_total": "no fix-it plan was carried out",
    "celery_broker_unacked_messages": "AMQP brokers (Redis only)",
    "celery_queue_consumers": "brokers that do not report consumers",
    **{f"celery_beat_{m}": "no beat schedule source configured (exporter/beat)" for m in (
        "up", "entry_info", "entry_last_dispatched_timestamp_seconds",
        "entry_last_success_timestamp_seconds", "entry_last_failure_timestamp_seconds",
        "entry_next_due_timestamp_seconds", "entry_overdue_seconds", "entry_missed_runs",
        "entry_enabled")},
    "celery_exporter_beat_source_up": "no beat schedule source configured (exporter/beat)",
}  # fmt: skip


class Board:
    """Lays panels out on Grafana's 24-column grid, row by row."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({
            "type": "row", "title": title, "collapsed": False, "panels": [],
            "id": len(self.panels) + 1, "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
        })  # fmt: skip
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0

    def add(self, kind: str, title: str, desc: str, targets: list[tuple[str, str]],
            unit: str = "short", w: int = 8, h: int = 8, **extra: Any) -> None:  # fmt: skip
        if self.x + w > 24:
            self._newline()
        defaults: dict[str, Any] = {"unit": unit}
        if "min" in extra:
            defaults["min"] = extra.pop("min")
        if "max" in extra:
            defaults["max"] = extra.pop("max")
        if "thresholds" in extra:
            steps = [{"color": "red", "value": None}]
            steps += [{"color": c, "value": v} for v, c in extra.pop("thresholds")]
            defaults["thresholds"] = {"mode": "absolute", "steps": steps}
        panel: dict[str, Any] = {
            "type": kind, "title": title, "description": desc, "datasource": DS,
            "id": len(self.panels) + 1,
            "gridPos": {"x": self.x, "y": self.y, "w": w, "h": h},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "targets": [
                {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + i),
                 "interval": "", "range": True, "instant": False}
                for i, (expr, legend) in enumerate(targets)
            ],
        }  # fmt: skip
        if kind == "timeseries":
            panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                                "tooltip": {"mode": "multi", "sort": "desc"}}  # fmt: skip
        panel.update(extra)
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def query_var(name: str, label: str, query: str, multi: bool = False) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": DS, "query": query,
        "definition": query, "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {"selected": True, "text": "All", "value": "$__all"} if multi else {},
    }  # fmt: skip


def variables(extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    base = [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "current": {}, "hide": 0},
        query_var("job", "Job", f"label_values(celery_exporter_build_info{{{base_sel()}}}, job)"),
        query_var("instance", "Instance",
                  f"label_values(celery_exporter_build_info{{{rsel()}}}, instance)", multi=True),
    ]  # fmt: skip
    return {"list": base + (extra or [])}


def dashboard(uid: str, title: str, desc: str, board: Board, extra_vars: list[Any] | None = None,
              ) -> dict[str, Any]:  # fmt: skip
    return {
        "uid": uid, "title": title, "description": desc, "tags": ["celery"],
        "timezone": "browser", "editable": True, "schemaVersion": 39, "version": 1,
        "refresh": "30s", "time": {"from": "now-1h", "to": "now"}, "graphTooltip": 1,
        "templating": variables(extra_vars), "panels": board.panels,
        "links": [{"type": "dashboards", "tags": ["celery"], "asDropdown": True,
                   "title": "Celery dashboards", "includeVars": True, "keepTime": True}],
        "annotations": {"list": [{
            "name": "Celery alerts", "datasource": DS, "enable": True, "iconColor": "red",
            "expr": f'ALERTS{{{base_sel()}, alertname=~"Celery.*", alertstate="firing", '
                    'job=~"$job"}',
            "titleFormat": "{{alertname}}", "textFormat": "{{description}}"}]},
    }  # fmt: skip


STATES = ("sent", "received", "started", "succeeded", "failed", "retried", "revoked", "rejected")


def rate(metric: str, by: str = "", extra: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{sel(extra)}}}[{RI}]))"


def quantiles(metric: str, extra: str = "") -> list[tuple[str, str]]:
    m = f"{metric}_bucket{{{sel(extra)}}}"
    return [
        (f"histogram_quantile({q}, sum by (le) (rate({m}[{RI}])))", f"p{p}")
        for q, p in ((0.5, "50"), (0.9, "90"), (0.99, "99"))
    ]
