#!/usr/bin/env python3
"""Generate the Prometheus recording and alerting rules (`celery-rules.yml`) from one table.

Why a generator: every threshold and `for:` duration lives in `VARIABLES` below (documented in
the README's runbook), so a site overrides one value with `--set name=value` instead of editing
PromQL in several places, and the tests render the same rules with short durations.

    python deploy/prometheus/generate.py                    # rewrite celery-rules.yml
    python deploy/prometheus/generate.py --set slo=0.995 --set fast_burn_for=5m -o my-rules.yml
    python deploy/prometheus/generate.py --check            # exit 1 if the file is stale
    python deploy/prometheus/generate.py --metric-prefix myapp_ -o myapp-rules.yml

Success ratios are computed from counters (sum the rates, then divide), never by averaging a
ratio gauge, so they stay right across exporter restarts (rate() handles counter resets).

Every series an expression reads carries the selector (`job="celery"` by default; `--set
job=NAME` or `--set 'selector=cluster="eu1"'`), so another Celery exporter scraped by the same
Prometheus (danihodovic/celery-exporter has the same metric names) never trips these alerts.
An exporter run with `--metric-prefix P` needs the rules with `--metric-prefix P` (or `--set
metric_prefix=P`): every `celery_` metric name then reads `P`; recording rules keep their
`celery:` names.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
# The beat rules sit next to this file; it runs as a script and is loaded by path in the tests.
sys.path.insert(0, str(HERE))
import beat_rules  # noqa: E402

DEFAULT_OUT = HERE / "celery-rules.yml"
WINDOWS = ("5m", "30m", "1h", "6h")
SECONDS = {"5m": 300, "30m": 1800, "1h": 3600, "6h": 21600}

# name -> (default, meaning). Durations are Prometheus durations ("2m"); the rest numbers.
VARIABLES: dict[str, tuple[Any, str]] = {
    "job": ("celery", "Prometheus job name of the exporter (one job per Celery cluster)"),
    "selector": (
        "",
        'Label matchers every expression carries instead of job="<job>", e.g. '
        'job="celery",env="prod" (target labels: up has no --static-label labels)',
    ),
    "metric_prefix": (
        "celery_",
        "The exporter's --metric-prefix: replaces celery_ in every metric name the rules read",
    ),
    "slo": (0.99, "Target share of finished tasks that succeed (succeeded / (succeeded+failed))"),
    "fast_burn_factor": (14.4, "Fast burn: error-budget burn rate over 1h and 5m (2% in 1h)"),
    "fast_burn_for": ("2m", "How long the fast burn must hold before paging"),
    "slow_burn_factor": (6.0, "Slow burn: burn rate over 6h and 30m (5% of budget in 6h)"),
    "slow_burn_for": ("15m", "How long the slow burn must hold"),
    "burn_min_tasks": (20, "Minimum finished tasks in the short window before a burn alert"),
    "task_failure_ratio": (0.10, "A task name alerts only when at least this share fails (30m)"),
    "task_failure_factor": (3.0, "...and its 30m failure share is this many times its 6h share"),
    "task_failure_min_tasks": (10, "Minimum finished tasks of that name in 30m"),
    "task_failure_for": ("10m", "How long a task name must fail more than usual"),
    "backlog_min_messages": (100, "A growing queue alerts only above this many waiting messages"),
    "backlog_for": ("15m", "How long the backlog must keep growing"),
    "oldest_age_seconds": (600, "Oldest waiting message older than this (seconds) alerts"),
    "oldest_age_for": ("5m", "How long the oldest message must stay too old"),
    "no_consumers_for": ("5m", "How long a queue may hold work with no worker consuming it"),
    "min_workers": (1, "Workers each queue needs (celery_queue_workers below this alerts)"),
    "queue_min_workers": ({}, 'Per-queue overrides of min_workers, e.g. {"critical": 3}'),
    "workers_for": ("3m", "How long a queue may have too few workers"),
    "stuck_for": ("5m", "How long stuck tasks (running > --stuck-after) must persist"),
    "broker_down_for": ("2m", "How long the broker may be unreachable from the exporter"),
    "source_down_for": ("5m", "How long a task source (events, results) may be down"),
    "exporter_down_for": ("5m", "How long the exporter may be unscraped or down"),
    "events_off_for": ("15m", "How long workers may run without sending task events"),
    "runbook_url": ("README.md", "Where the runbook lives; alerts link to its anchors"),
    **beat_rules.VARIABLES,
}


_METRIC = re.compile(r"\bcelery_(?=[A-Za-z_])")


def prefixed(expr: str, prefix: str) -> str:
    """`celery_x` -> `<prefix>x` for every metric name, as the exporter's --metric-prefix."""
    return expr if prefix == "celery_" else _METRIC.sub(lambda _m: prefix, expr)


def defaults() -> dict[str, Any]:
    return {name: value for name, (value, _doc) in VARIABLES.items()}


def _num(value: float) -> str:
    """A PromQL number literal without float noise (0.15 not 0.15000000000000002)."""
    return f"{value:.6g}"


def selector(v: dict[str, Any]) -> str:
    """The label matchers every series selector in the rules carries."""
    return str(v["selector"] or f'job="{v["job"]}"')


def _sel(v: dict[str, Any], metric: str, extra: str = "") -> str:
    return f"{metric}{{{selector(v)}{', ' + extra if extra else ''}}}"


def _by(v: dict[str, Any], *labels: str) -> str:
    """`by (job, <the selector's labels>, labels...)`: aggregations keep what selects them."""
    names = re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", selector(v))
    return f"by ({', '.join(dict.fromkeys(['job', *names, *labels]))})"


def recording_rules(v: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for w in WINDOWS:
        succ = f"sum {_by(v, 'name')} (rate({_sel(v, 'celery_task_succeeded_total')}[{w}]))"
        fail = f"sum {_by(v, 'name')} (rate({_sel(v, 'celery_task_failed_total')}[{w}]))"
        ok, bad = _sel(v, f"celery:task_succeeded:rate{w}"), _sel(v, f"celery:task_failed:rate{w}")
        # A name that never failed has no failed series (and vice versa): `or 0 * other` makes
        # it 0 so the ratio is defined instead of the series vanishing.
        rules += [
            {"record": f"celery:task_succeeded:rate{w}", "expr": f"{succ}\nor\n0 * {fail}\n"},
            {"record": f"celery:task_failed:rate{w}", "expr": f"{fail}\nor\n0 * {succ}\n"},
            {
                "record": f"celery:task_success_ratio:{w}",
                "expr": f"{ok}\n/\n({ok} + {bad})\n",
            },
            {
                "record": f"celery:tasks_completed:rate{w}",
                "expr": f"sum {_by(v)} ({ok} + {bad})",
            },
            {
                "record": f"celery:tasks_success_ratio:{w}",
                "expr": f"sum {_by(v)} ({ok})\n/\n{_sel(v, f'celery:tasks_completed:rate{w}')}\n",
            },
        ]
    return rules


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str,
           v: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_ not in ("0", "0s", ""):
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{v['runbook_url']}#{name.lower()}",
    }
    return rule


def _burn(
    speed: str, long_w: str, short_w: str, severity: str, v: dict[str, Any]
) -> dict[str, Any]:
    factor = float(v[f"{speed}_burn_factor"])
    budget = 1.0 - float(v["slo"])
    limit = _num(factor * budget)
    # Error ratio over both windows above factor x budget; the short window makes the alert
    # stop soon after recovery, the traffic guard keeps 1 failure out of 2 tasks from paging.
    expr = (
        f"(1 - {_sel(v, f'celery:tasks_success_ratio:{long_w}')}) > {limit}\n"
        f"and\n(1 - {_sel(v, f'celery:tasks_success_ratio:{short_w}')}) > {limit}\n"
        f"and\n{_sel(v, f'celery:tasks_completed:rate{short_w}')} * {SECONDS[short_w]} >= "
        f"{_num(float(v['burn_min_tasks']))}\n"
    )
    return _alert(
        f"CeleryTaskSuccessRateBurn{speed.capitalize()}", expr, v[f"{speed}_burn_for"], severity,
        f"Celery task success rate is burning the error budget ({speed} burn)",
        f"Job {{{{ $labels.job }}}}: {{{{ $value | humanizePercentage }}}} of tasks failed over "
        f"the last {long_w} (limit {limit} for SLO {_num(float(v['slo']))}, {_num(factor)}x "
        f"burn).",
        v,
    )  # fmt: skip


def _workers_expr(v: dict[str, Any]) -> str:
    overrides: dict[str, int] = dict(v["queue_min_workers"])

    def base(extra: str = "") -> str:
        return f"max {_by(v, 'queue_name')} ({_sel(v, 'celery_queue_workers', extra)})"

    if not overrides:
        return base() + f" < {int(v['min_workers'])}\n"
    names = "|".join(sorted(overrides))
    parts = [base(f'queue_name!~"{names}"') + f" < {int(v['min_workers'])}"]
    for queue, need in sorted(overrides.items()):
        match = f'queue_name="{queue}"'
        parts.append(base(match) + f" < {int(need)}")
        # A queue we were told to expect must alert even if its series never appeared;
        # `- 1` turns absent()'s 1 into the 0 workers the description reports.
        parts.append(f"absent({_sel(v, 'celery_queue_workers', match)}) - 1")
    return "\nor\n".join(parts) + "\n"


def alerting_rules(v: dict[str, Any]) -> list[dict[str, Any]]:
    q = f"max {_by(v, 'queue_name')}"
    on = _by(v, "queue_name").replace("by", "on", 1)
    ratio = _num(float(v["task_failure_ratio"]))

    def ratio_of(w: str) -> str:
        return _sel(v, f"celery:task_success_ratio:{w}")

    return [
        _burn("fast", "1h", "5m", "critical", v),
        _burn("slow", "6h", "30m", "warning", v),
        _alert(
            "CeleryTaskFailingMoreThanUsual",
            f"(1 - {ratio_of('30m')}) > {ratio}\n"
            f"and\n(1 - {ratio_of('30m')})\n  > {_num(float(v['task_failure_factor']))}"
            f" * (1 - {ratio_of('6h')})\n"
            f"and\n({_sel(v, 'celery:task_succeeded:rate30m')} + "
            f"{_sel(v, 'celery:task_failed:rate30m')}) * 1800 >= "
            f"{_num(float(v['task_failure_min_tasks']))}\n",
            v["task_failure_for"],
            "warning",
            "A Celery task is failing far more than usual",
            "Task {{ $labels.name }} (job {{ $labels.job }}): {{ $value | humanizePercentage }} "
            "of runs failed over 30m, well above its 6h share.",
            v,
        ),
        _alert(
            "CeleryQueueBacklogGrowing",
            f"{q} ({_sel(v, 'celery_queue_length')}) > {int(v['backlog_min_messages'])}\n"
            f"and\n{q} (deriv({_sel(v, 'celery_queue_length')}[10m])) > 0\n",
            v["backlog_for"],
            "warning",
            "A Celery queue's backlog keeps growing",
            "Queue {{ $labels.queue_name }} (job {{ $labels.job }}) has {{ $value }} waiting "
            "messages and has been growing for a while.",
            v,
        ),
        _alert(
            "CeleryQueueOldestMessageTooOld",
            f"{q} ({_sel(v, 'celery_queue_oldest_message_age_seconds')}) > "
            f"{int(v['oldest_age_seconds'])}\n",
            v["oldest_age_for"],
            "warning",
            "Messages are waiting too long in a Celery queue",
            "The oldest message in queue {{ $labels.queue_name }} (job {{ $labels.job }}) has "
            "waited {{ $value | humanizeDuration }}.",
            v,
        ),
        _alert(
            "CeleryQueueNoConsumers",
            f"{q} ({_sel(v, 'celery_queue_length')}) > 0\n"
            f"and {on}\n{q} ({_sel(v, 'celery_queue_workers')}) == 0\n"
            f"unless {on}\n{q} ({_sel(v, 'celery_queue_consumers')}) > 0\n",
            v["no_consumers_for"],
            "critical",
            "A Celery queue has work but no worker consumes it",
            "Queue {{ $labels.queue_name }} (job {{ $labels.job }}) holds {{ $value }} messages "
            "and no running worker consumes it.",
            v,
        ),
        _alert(
            "CeleryQueueTooFewWorkers",
            _workers_expr(v),
            v["workers_for"],
            "critical",
            "A Celery queue has fewer workers than expected",
            # absent() keeps only queue_name: name the job only when there is one.
            "Queue {{ $labels.queue_name }}{{ with $labels.job }} (job {{ . }}){{ end }} has "
            "{{ $value }} workers up, fewer than expected.",
            v,
        ),
        _alert(
            "CeleryTasksStuck",
            f"max {_by(v, 'name')} ({_sel(v, 'celery_tasks_stuck')}) > 0\n",
            v["stuck_for"],
            "warning",
            "Celery tasks are stuck",
            "{{ $value }} {{ $labels.name }} task(s) (job {{ $labels.job }}) have been running "
            "longer than the exporter's --stuck-after.",
            v,
        ),
        _alert(
            "CeleryExporterBrokerUnreachable",
            f"{_sel(v, 'celery_exporter_up')} == 0\n",
            v["broker_down_for"],
            "critical",
            "The Celery exporter cannot reach the broker",
            "Exporter {{ $labels.instance }} (job {{ $labels.job }}) failed to poll the broker; "
            "queue and worker metrics are stale.",
            v,
        ),
        _alert(
            "CeleryExporterSourceDown",
            f"{_sel(v, 'celery_exporter_source_up')} == 0\n",
            v["source_down_for"],
            "warning",
            "A Celery exporter task source is down",
            "Exporter {{ $labels.instance }} (job {{ $labels.job }}) lost its "
            "{{ $labels.source }} source; task counts may lag until it reconnects.",
            v,
        ),
        _alert(
            "CeleryExporterDown",
            f"{_sel(v, 'up')} == 0\nor\nabsent({_sel(v, 'up')})\n",
            v["exporter_down_for"],
            "critical",
            "The Celery exporter is down or not scraped",
            "Prometheus cannot scrape the Celery exporter (job {{ $labels.job }}"
            "{{ with $labels.instance }}, instance {{ . }}{{ else }}: no target at all{{ end }}); "
            "no Celery alert can fire while this lasts.",
            v,
        ),
        _alert(
            "CeleryTaskEventsDisabled",
            f"{_sel(v, 'celery_exporter_task_events_enabled')} == 0\n",
            v["events_off_for"],
            "info",
            "Celery workers are not sending task events",
            "Exporter {{ $labels.instance }} (job {{ $labels.job }}) sees workers but no task "
            "events: start workers with -E (or --enable-events-interval); counts rely on the "
            "result backend only.",
            v,
        ),
    ]


def build(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    v = defaults()
    for name, value in (overrides or {}).items():
        if name not in VARIABLES:
            raise KeyError(f"unknown rule variable {name!r}; known: {', '.join(VARIABLES)}")
        v[name] = value
    # One group: rules in a group run in order at the same timestamp, so each alert sees the
    # ratios recorded in this very evaluation (separate groups would lag, or race in promtool).
    rules = (
        recording_rules(v) + alerting_rules(v) + beat_rules.alerts(v, _alert, lambda m: _sel(v, m))
    )
    for rule in rules:
        rule["expr"] = prefixed(rule["expr"], str(v["metric_prefix"]))
    return {"groups": [{"name": "celery", "rules": rules}]}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # Multi-line PromQL reads best as a literal block.
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)

HEADER = (
    "# Generated by deploy/prometheus/generate.py: do not edit; change VARIABLES or pass\n"
    "# --set NAME=VALUE (thresholds are listed in the README's alert runbook).\n"
)


def render(overrides: dict[str, Any] | None = None) -> str:
    body = yaml.dump(build(overrides), Dumper=_Dumper, sort_keys=False, width=100)
    return HEADER + body


def variables_table() -> list[str]:
    """The README's threshold table rows (Markdown), one per variable."""
    return [f"| `{name}` | `{value}` | {doc} |" for name, (value, doc) in VARIABLES.items()]


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE")
        out[name] = yaml.safe_load(raw) if raw else ""
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--metric-prefix", help="the exporter's --metric-prefix (default celery_)")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="fail if --out is not up to date")
    parser.add_argument("--list", action="store_true", help="print the variables table")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(variables_table()))
        return 0
    overrides = _parse_set(args.set)
    if args.metric_prefix is not None:
        overrides["metric_prefix"] = args.metric_prefix
    text = render(overrides)
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run deploy/prometheus/generate.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
