"""celery-mixin's queries, read and evaluated per job: the half of mixin_check.py that knows
Grafana and Prometheus, not Celery.

`extract` reads every target and template variable of a mixin's rendered dashboards and every
rule of its alerts and rules files; `evaluate` runs each against two Prometheus jobs as
Grafana would (variables from their own label_values queries, `$__rate_interval` 1m,
`$__range` the run), alerts on both jobs split by their `job` label (and again without their
threshold); `totals` compares each family's series at their highest; `report` prints it.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

JOBS = {"reference": "celery-reference", "ours": "celery-ours"}
FAMILIES = (*(f"celery_task_{kind}_total" for kind in ("sent", "received", "started",
              "succeeded", "failed", "rejected", "revoked", "retried")),
            "celery_task_runtime_count", "celery_task_queue_wait_time_count", "celery_worker_up",
            "celery_worker_tasks_active", "celery_queue_length", "celery_active_consumer_count",
            "celery_active_worker_count", "celery_active_process_count")  # fmt: skip
RATE_INTERVAL = "1m"  # Grafana's $__rate_interval for a datasource at its default 15 s
STEP = 15
THRESHOLD = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[-0-9.]+\s*$")
OUTCOMES = {(True, True): "both", (True, False): "reference only",
            (False, True): "ours only", (False, False): "neither"}  # fmt: skip
LITERAL_JOB = re.compile(r'job=~"[^"$]*"')
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*(\w+)\)\s*$", re.S)


@dataclass
class Query:
    where: str  # dashboard file or alerts file
    title: str
    expr: str
    kind: str  # "instant", "range", "variable" or "alert"


def extract(mixin: Path) -> list[Query]:
    """Every target and template-variable query of the rendered dashboards, every rule."""
    out: list[Query] = []
    for path in sorted((mixin / "dashboards_out").glob("*.json")):
        board = json.loads(path.read_text())
        for var in board.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                q = var.get("query")
                out.append(Query(path.name, f"${var['name']}",
                                 q["query"] if isinstance(q, dict) else q, "variable"))  # fmt: skip
        for panel in _panels(board.get("panels", []) + [
                p for row in board.get("rows", []) for p in row.get("panels", [])]):  # fmt: skip
            for target in panel.get("targets", []):
                if target.get("expr"):
                    kind = "instant" if target.get("instant") else "range"
                    out.append(Query(path.name, panel.get("title", ""), target["expr"], kind))
    for name in ("prometheus_alerts.yaml", "prometheus_rules.yaml"):
        path = mixin / name
        groups = (yaml.safe_load(path.read_text()) or {}).get("groups", []) if path.exists() else []
        for group in groups:
            for rule in group.get("rules", []):
                title = rule.get("alert") or rule.get("record", "")
                out.append(Query(name, title, rule["expr"], "alert"))
    return out


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(_panels(p.get("panels", [])))
    return out


class Prom:
    def __init__(self, url: str, start: float, end: float) -> None:
        self.url, self.start, self.end = url, start, end

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        url = f"{self.url}/api/v1/{path}?{query}"  # always our own Prometheus over http
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def series(self, expr: str, instant: bool) -> dict[frozenset[tuple[str, str]], float | None]:
        """Label sets in the result -> their last numeric value (None: only NaN or Inf)."""
        if instant:
            data = self.get("query", query=expr, time=self.end)
            rows = [(r["metric"], [r["value"]]) for r in data["result"]]
        else:
            data = self.get("query_range", query=expr, start=self.start, end=self.end, step=STEP)
            rows = [(r["metric"], r["values"]) for r in data["result"]]
        out: dict[frozenset[tuple[str, str]], float | None] = {}
        for metric, values in rows:
            numbers = [float(v[1]) for v in values if v[1] not in ("NaN", "+Inf", "-Inf")]
            out[frozenset(metric.items())] = numbers[-1] if numbers else None
        return out

    def label_values(self, expr: str, label: str) -> list[str]:
        return sorted(self.get(f"label/{label}/values", **{"match[]": expr},
                               start=self.start, end=self.end))  # fmt: skip


def resolve(prom: Prom, board: list[Query], job: str, run: float) -> dict[str, str]:
    """A dashboard's variables for one job, as Grafana fills them (All: every value)."""
    values: dict[str, str] = {"__rate_interval": RATE_INTERVAL, "__range": f"{int(run)}s",
                              "__interval": f"{STEP}s", "job": job}  # fmt: skip
    for q in board:
        if q.kind != "variable":
            continue
        name = q.title[1:]
        m = LABEL_VALUES.match(substitute(q.expr, values))
        found = prom.label_values(m.group(1), m.group(2)) if m else []
        if name == "job":
            values[name] = job
        elif len(found) > 1:
            values[name] = "(" + "|".join(found) + ")"
        else:
            values[name] = found[0] if found else ""
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    if "job" in values:  # a dashboard that names its jobs (celery-tasks.json): this job
        expr = LITERAL_JOB.sub(f'job=~"{values["job"]}"', expr)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return expr


def evaluate(prom: Prom, queries: list[Query], run: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    boards: dict[str, list[Query]] = {}
    for q in queries:
        boards.setdefault(q.where, []).append(q)
    for board in boards.values():
        variables = {side: resolve(prom, board, job, run) for side, job in JOBS.items()}
        for q in board:
            per_side = {}
            for side, job in JOBS.items():
                if q.kind == "alert":
                    got = prom.series(q.expr, instant=False)
                    per_side[side] = {k: v for k, v in got.items() if ("job", job) in k}
                elif q.kind == "variable":
                    m = LABEL_VALUES.match(substitute(q.expr, {**variables[side], "job": job}))
                    vals = prom.label_values(m.group(1), m.group(2)) if m else []
                    if q.title == "$job":  # the job list is shared: is this job in it?
                        vals = [v for v in vals if v == job]
                    per_side[side] = {frozenset({(m.group(2) if m else "", v)}): 1.0
                                      for v in vals}  # fmt: skip
                else:
                    expr = substitute(q.expr, variables[side])
                    per_side[side] = prom.series(expr, instant=q.kind == "instant")
            rows.append(_row(q, per_side))
            if q.kind == "alert" and THRESHOLD.search(q.expr):
                bare = Query(q.where, q.title + " (no threshold)", THRESHOLD.sub("", q.expr),
                             "alert")  # fmt: skip
                got = prom.series(bare.expr, instant=False)
                rows.append(_row(bare, {side: {k: v for k, v in got.items() if ("job", job) in k}
                                        for side, job in JOBS.items()}))  # fmt: skip
    return rows


def totals(prom: Prom, run: float) -> list[dict[str, Any]]:
    """Each family's series at their highest over the run, per job: exact totals side by side."""
    rows = []
    for family in FAMILIES:
        got = prom.series(f"max_over_time({family}[{int(run)}s])", instant=True)
        per_side = {side: {k: v for k, v in got.items() if ("job", job) in k}
                    for side, job in JOBS.items()}  # fmt: skip
        rows.append(_row(Query("families", family, family, "total"), per_side))
    return rows


def _row(q: Query, per_side: dict[str, dict[frozenset[tuple[str, str]], float | None]]
         ) -> dict[str, Any]:  # fmt: skip
    def plain(key: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
        return frozenset((k, v) for k, v in key if k not in ("job", "instance"))

    got = {side: {plain(k): v for k, v in series.items()} for side, series in per_side.items()}
    ref, ours = got["reference"], got["ours"]
    outcome = OUTCOMES[(bool(ref), bool(ours))]
    values = {}  # label set -> (reference, ours) where both have a number and they differ
    # short windows at the run's last step differ by scrape phase: not compared
    noisy = "$__rate_interval" in q.expr or "[10m]" in q.expr
    for key in () if noisy else ref.keys() & ours.keys():
        a, b = ref[key], ours[key]
        # 1: a series born at 1 loses that 1 to increase() or not by scrape phase (seen:
        # a task's 12 failures read 12 on one job and 11 on the other, the totals equal)
        if a is not None and b is not None and abs(a - b) > max(1.0, 0.05 * max(abs(a), abs(b))):
            values[json.dumps(sorted(key))] = (a, b)
    return {"where": q.where, "title": q.title, "kind": q.kind, "outcome": outcome,
            "labels_differ": bool(ref and ours and ref.keys() != ours.keys()),
            "finite": {side: any(v is not None for v in g.values()) for side, g in got.items()},
            "values_differ": values,
            "reference": _listed(ref), "ours": _listed(ours),
            "expr": q.expr}  # fmt: skip


def _listed(got: dict[frozenset[tuple[str, str]], float | None]) -> list[Any]:
    return sorted([sorted(key), value] for key, value in got.items())


def report(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        flag = " LABELS DIFFER" if r["labels_differ"] else ""
        flag += " VALUES DIFFER" if r["values_differ"] else ""
        nan = "" if r["finite"]["reference"] == r["finite"]["ours"] else f" finite={r['finite']}"
        print(f"{r['outcome']:15} {r['kind']:8} {r['where']:28} {r['title']}{flag}{nan}")
        if r["labels_differ"] or r["outcome"] in ("reference only", "ours only"):
            ref = [k for k, _ in r["reference"]]
            ours = [k for k, _ in r["ours"]]
            print(f"    reference only: {[k for k in ref if k not in ours][:6]}")
            print(f"    ours only:      {[k for k in ours if k not in ref][:6]}")
        for key, (a, b) in list(r["values_differ"].items())[:4]:
            print(f"    {key}: reference {a:g}, ours {b:g}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    differ = sum(r["labels_differ"] for r in rows)
    values = sum(bool(r["values_differ"]) for r in rows)
    print(f"\n{len(rows)} rows: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
          + f"; label sets differ on {differ}, values (>5%) on {values}")  # fmt: skip
