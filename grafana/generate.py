#!/usr/bin/env python3
"""Generate the Grafana dashboards (grafana/dashboards/*.json) ready for provisioning.

Why a generator: three dashboards share variables, datasource wiring and panel defaults; one
Python description keeps them consistent, and tests check that the committed JSON is exactly
what this file produces and that every query names only metrics the exporter exposes.

    python grafana/generate.py            # rewrite grafana/dashboards/*.json
    python grafana/generate.py --check    # exit 1 if a committed file is stale
    python grafana/generate.py --selector 'job="celery-eu",env="prod"' --out-dir my-dashboards
    python grafana/generate.py --metric-prefix myapp_ --out-dir myapp-dashboards

Every query carries the selector (default job="celery", the shipped rules' job), so another
Celery exporter in the same Prometheus never shows up on these dashboards. `--metric-prefix`
is the exporter's: every `celery_` metric name then reads with that prefix (recording rules
keep their `celery:` names).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

# The helpers sit next to this file; it runs as a script and is loaded by path in the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from beat_panels import beat_row
from celery_panels import (
    ALLOWED_EMPTY,
    DEFAULT_SELECTOR,
    STATES,
    Board,
    dashboard,
    quantiles,
    query_var,
    rate,
    rsel,
    sel,
    use_selector,
)

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
__all__ = ["ALLOWED_EMPTY", "STATES", "main", "render_all"]  # what the tests read


def overview() -> dict[str, Any]:
    q = sel()
    b = Board()
    b.row("Success")
    b.add("stat", "Success rate (5m)", "Share of finished tasks that succeeded over 5m, from "
          "the counters (recording rule celery:tasks_success_ratio:5m).",
          [(f"celery:tasks_success_ratio:5m{{{rsel()}}}", "{{job}}")], "percentunit", w=4,
          thresholds=[(0.95, "orange"), (0.99, "green")], min=0, max=1)  # fmt: skip
    b.add("stat", "Success rate (exporter window)", "The exporter's own success-ratio gauge "
          "over --success-window (see its HELP).",
          [(f"min(celery_tasks_success_ratio{{{q}}})", "")], "percentunit", w=4,
          thresholds=[(0.95, "orange"), (0.99, "green")], min=0, max=1)  # fmt: skip
    b.add("timeseries", "Success rate vs SLO", "Success ratio over 5m and 1h against the SLO "
          "($slo); the burn-rate alerts fire when both windows fall well below it.",
          [(f"celery:tasks_success_ratio:5m{{{rsel()}}}", "5m"),
           (f"celery:tasks_success_ratio:1h{{{rsel()}}}", "1h"),
           ("vector($slo)", "SLO")], "percentunit", w=16, max=1)  # fmt: skip
    b.add("timeseries", "Throughput by state", "Tasks per second entering each state, summed "
          "over task names and queues.",
          [(rate(f"celery_task_{s}_total"), s) for s in STATES], "ops", w=12)  # fmt: skip
    b.add("timeseries", "Failures by task", "Failed tasks per second, by task name.",
          [(rate("celery_task_failed_total", "name"), "{{name}}")], "ops", w=6)  # fmt: skip
    b.add("timeseries", "Failures by exception", "Failures per second, by task name and "
          "exception type.",
          [(rate("celery_task_exceptions_total", "name, exception"), "{{name}}: {{exception}}")],
          "ops", w=6)  # fmt: skip
    b.row("Queues")
    b.add("timeseries", "Queue depth", "Messages waiting in each queue (Redis priority "
          "sub-queues included).",
          [(f"max by (queue_name) (celery_queue_length{{{q}}})", "{{queue_name}}")],
          w=8)  # fmt: skip
    b.add("timeseries", "Oldest message age", "Age of the oldest waiting message per queue.",
          [(f"max by (queue_name) (celery_queue_oldest_message_age_seconds{{{q}}})",
            "{{queue_name}}")], "s", w=8)  # fmt: skip
    b.add("timeseries", "Workers per queue", "Up workers consuming each queue (stays at 0 when "
          "they are all gone), and broker-side consumers where the broker reports them.",
          [(f"max by (queue_name) (celery_queue_workers{{{q}}})", "workers {{queue_name}}"),
           (f"max by (queue_name) (celery_queue_consumers{{{q}}})", "consumers {{queue_name}}")],
          w=8)  # fmt: skip
    b.row("Workers")
    b.add("stat", "Workers up", "Workers that answered or sent a heartbeat recently.",
          [(f"sum(celery_workers{{{q}}})", "")], w=4, thresholds=[(1, "green")])  # fmt: skip
    b.add("timeseries", "Tasks in workers", "Active, reserved (prefetched) and scheduled (ETA) "
          "tasks across the cluster, and unacknowledged broker messages (Redis).",
          [(f"sum(celery_tasks_active{{{q}}})", "active"),
           (f"sum(celery_tasks_reserved{{{q}}})", "reserved"),
           (f"sum(celery_tasks_scheduled{{{q}}})", "scheduled"),
           (f"sum(celery_broker_unacked_messages{{{q}}})", "unacked")], w=10)  # fmt: skip
    b.add("timeseries", "Worker utilisation", "Active tasks over pool concurrency, per worker.",
          [(f"max by (hostname) (celery_worker_tasks_active{{{q}}}) / max by (hostname) "
            f"(celery_worker_pool_max_concurrency{{{q}}})", "{{hostname}}")],
          "percentunit", w=10, min=0)  # fmt: skip
    b.row("Latency")
    b.add("timeseries", "Task runtime percentiles", "Runtime of finished tasks (histogram).",
          quantiles("celery_task_runtime_seconds"), "s", w=8)  # fmt: skip
    b.add("timeseries", "Queue wait percentiles", "Time from sent (or received) to started.",
          quantiles("celery_task_queue_wait_seconds"), "s", w=8)  # fmt: skip
    b.add("timeseries", "Stuck tasks", "Tasks running longer than --stuck-after, by name.",
          [(f"sum by (name) (celery_tasks_stuck{{{q}}})", "{{name}}")], w=8)  # fmt: skip
    beat_row(b)
    slo = {"name": "slo", "label": "SLO", "type": "custom", "query": "0.99,0.995,0.999,0.95,0.9",
           "current": {"selected": True, "text": "0.99", "value": "0.99"}}  # fmt: skip
    return dashboard("celery-overview", "Celery / Overview", "Task success against the SLO, "
                     "throughput, failures, queues, workers and latency.", b, [slo])  # fmt: skip


def task() -> dict[str, Any]:
    task_sel = 'name=~"$task"'
    q = sel()
    b = Board()
    b.row("Task $task")
    b.add("timeseries", "Success rate", "Success ratio of this task over 5m and 1h (recording "
          "rules celery:task_success_ratio:*).",
          [(f"celery:task_success_ratio:5m{{{rsel(task_sel)}}}", "5m {{name}}"),
           (f"celery:task_success_ratio:1h{{{rsel(task_sel)}}}", "1h {{name}}")],
          "percentunit", w=12, max=1)  # fmt: skip
    b.add("timeseries", "Throughput by state", "Tasks per second entering each state.",
          [(rate(f"celery_task_{s}_total", extra=task_sel), s) for s in STATES], "ops",
          w=12)  # fmt: skip
    b.add("timeseries", "Failures by exception", "Failures per second by exception type.",
          [(rate("celery_task_exceptions_total", "exception", task_sel), "{{exception}}")], "ops",
          w=8)  # fmt: skip
    b.add("timeseries", "Finished by queue", "Succeeded and failed per second, by queue.",
          [(rate("celery_task_succeeded_total", "queue_name", task_sel), "ok {{queue_name}}"),
           (rate("celery_task_failed_total", "queue_name", task_sel), "failed {{queue_name}}")],
          "ops", w=8)  # fmt: skip
    b.add("timeseries", "Retries", "Retries per second (a retry is not a failure).",
          [(rate("celery_task_retried_total", extra=task_sel), "retried")], "ops", w=8)  # fmt: skip
    b.add("timeseries", "Runtime percentiles", "Runtime of this task.",
          quantiles("celery_task_runtime_seconds", task_sel), "s", w=8)  # fmt: skip
    b.add("timeseries", "Queue wait percentiles", "Wait before this task started.",
          quantiles("celery_task_queue_wait_seconds", task_sel), "s", w=8)  # fmt: skip
    b.add("timeseries", "Stuck", "Runs of this task past --stuck-after.",
          [(f"sum(celery_tasks_stuck{{{sel(task_sel)}}})", "stuck")], w=8)  # fmt: skip
    name_var = query_var(
        "task", "Task",
        f"label_values(celery_task_succeeded_total{{{q}}}, name)",
        multi=True,
    )  # fmt: skip
    return dashboard("celery-task", "Celery / Task", "Drill-down into one task name: success, "
                     "states, exceptions, runtime and wait.", b, [name_var])  # fmt: skip


def exporter() -> dict[str, Any]:
    q = sel()
    b = Board()
    b.row("Health")
    b.add("stat", "Scrape up", "Prometheus could scrape the exporter.",
          [(f"min(up{{{q}}})", "")], w=4, thresholds=[(1, "green")])  # fmt: skip
    b.add("stat", "Broker reachable", "celery_exporter_up: the last poll reached the broker.",
          [(f"min(celery_exporter_up{{{q}}})", "")], w=4, thresholds=[(1, "green")])  # fmt: skip
    b.add("stat", "Task events", "0: workers are alive but send no task events (-E is off).",
          [(f"min(celery_exporter_task_events_enabled{{{q}}})", "")], w=4,
          thresholds=[(1, "green")])  # fmt: skip
    b.add("timeseries", "Sources up", "Each task source (events, results) connected.",
          [(f"min by (source) (celery_exporter_source_up{{{q}}})", "{{source}}")],
          w=6)  # fmt: skip
    b.add("timeseries", "Snapshot age", "Age of the cluster snapshot served on /metrics.",
          [(f"max(celery_exporter_snapshot_age_seconds{{{q}}})", "snapshot"),
           (f"time() - max(celery_exporter_last_successful_poll_timestamp_seconds{{{q}}})",
            "since last good poll")], "s", w=6)  # fmt: skip
    b.row("Polling")
    b.add("timeseries", "Poll duration", "Duration of the last cluster poll.",
          [(f"max(celery_exporter_poll_duration_seconds{{{q}}})", "poll")], "s", w=8)  # fmt: skip
    b.add("timeseries", "Polls and errors", "Polls and failed polls per second, and inspect "
          "broadcasts nobody answered in time.",
          [(rate("celery_exporter_polls_total"), "polls"),
           (rate("celery_exporter_poll_errors_total"), "errors"),
           (rate("celery_exporter_inspect_timeouts_total", "method"), "timeout {{method}}")],
          "ops", w=8)  # fmt: skip
    b.add("timeseries", "Scrape", "Prometheus' own scrape duration of the exporter.",
          [(f"max(scrape_duration_seconds{{{q}}})", "scrape")], "s", w=8)  # fmt: skip
    b.row("Task ledger")
    b.add("timeseries", "Events received", "Celery events per second, by type.",
          [(rate("celery_exporter_events_received_total", "type"), "{{type}}")], "ops",
          w=8)  # fmt: skip
    b.add("timeseries", "Results", "Result records read per second by source, skipped ones by "
          "reason, and undecodable messages.",
          [(rate("celery_exporter_results_received_total", "source"), "{{source}}"),
           (rate("celery_exporter_results_skipped_total", "source, reason"),
            "skipped {{source}} {{reason}}"),
           (rate("celery_exporter_parse_errors_total", "source"), "parse errors {{source}}")],
          "ops", w=8)  # fmt: skip
    b.add("timeseries", "Source last message age", "Seconds since each source last delivered.",
          [(f"time() - max by (source) (celery_exporter_source_last_message_timestamp_seconds"
            f"{{{q}}})", "{{source}}")], "s", w=8)  # fmt: skip
    b.add("timeseries", "Reconcile", "Reconcile runs and result keys scanned per second.",
          [(rate("celery_exporter_reconcile_runs_total"), "runs"),
           (rate("celery_exporter_reconcile_keys_scanned_total"), "keys scanned")], "ops",
          w=8)  # fmt: skip
    b.add("timeseries", "Ledger", "Task ids remembered for de-duplication, evictions, "
          "evicted ids given up before a reconcile covered them (those could count twice), and "
          "label values folded into other/unknown.",
          [(f"sum(celery_exporter_ledger_entries{{{q}}})", "entries"),
           (rate("celery_exporter_ledger_evictions_total"), "evictions/s"),
           (f"sum(celery_exporter_ledger_evicted_ids{{{q}}})", "evicted ids remembered"),
           (rate("celery_exporter_ledger_evicted_ids_dropped_total"), "evicted ids dropped/s"),
           (rate("celery_exporter_label_overflow_total", "label"), "overflow {{label}}/s")],
          w=8)  # fmt: skip
    b.add("timeseries", "API and fix-it", "API requests, fix-it plans and actions per second.",
          [(rate("celery_exporter_api_requests_total", "endpoint, code"), "{{endpoint}} {{code}}"),
           (rate("celery_exporter_plans_total", "outcome"), "plans {{outcome}}"),
           (rate("celery_exporter_actions_total", "action, outcome"),
            "{{action}} {{outcome}}")], "ops", w=8)  # fmt: skip
    b.add("table", "Build", "Exporter version and Python per instance.",
          [(f"max by (instance, version, python) (celery_exporter_build_info{{{q}}})", "")],
          w=24, h=5)  # fmt: skip
    return dashboard("celery-exporter", "Celery / Exporter health", "Is the exporter itself "
                     "healthy: scrapes, broker, sources, polls and the task ledger.",
                     b)  # fmt: skip


DASHBOARDS = {"celery-overview.json": overview, "celery-task.json": task,
              "celery-exporter.json": exporter}  # fmt: skip


_METRIC = re.compile(r"\bcelery_(?=[A-Za-z_])")


def render_all(selector: str = DEFAULT_SELECTOR, prefix: str = "celery_") -> dict[str, str]:
    use_selector(selector)
    out = {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}
    if prefix != "celery_":  # as the exporter's --metric-prefix renames every metric
        out = {name: _METRIC.sub(lambda _m: prefix, text) for name, text in out.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument(
        "--selector",
        default=DEFAULT_SELECTOR,
        help=f"label matchers every query carries (default {DEFAULT_SELECTOR})",
    )
    parser.add_argument(
        "--metric-prefix",
        default="celery_",
        help="the exporter's --metric-prefix: replaces celery_ in every metric name",
    )
    args = parser.parse_args(argv)
    stale = 0
    for name, text in render_all(args.selector, args.metric_prefix).items():
        path = args.out_dir / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"{path} is stale: run grafana/generate.py", file=sys.stderr)
                stale = 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return stale


if __name__ == "__main__":
    raise SystemExit(main())
