"""Helpers shared by the dashboard/rules tests and the Prometheus e2e test: which metric names a
PromQL expression reads, which names the exporter exposes, and every query the shipped
dashboards and rules run."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT / "tests" / "golden"
CONTRACT = ROOT / "tests" / "unit" / "metric_contract.txt"
RULES = ROOT / "deploy" / "prometheus" / "celery-rules.yml"

# Series Prometheus itself makes, which the shipped queries may read.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan"}  # fmt: skip


def load_module(rel: str, name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def metric_names(expr: str) -> set[str]:
    """Metric (and recording-rule) names an expression selects; functions and labels excluded."""
    e = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)[^)]*\)", r"\1", expr)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+\w+", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    e = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", e)
    # A name followed by "(" is a function; (?![\w:]) stops a match on a shorter prefix of it.
    found = set(re.findall(r"[a-zA-Z_:][\w:]*(?![\w:])(?!\s*\()", e))
    return {n for n in found if n.lower() not in _KEYWORDS}


def unselected(expr: str, selector: str) -> list[str]:
    """Names of the series an expression selects without `selector` among its matchers."""
    e = re.sub(r"label_values\((.*?),\s*\w+\s*\)", r"\1", expr)
    e = re.sub(r"\{[^}]*\}", lambda m: "{+}" if selector in m.group(0) else "{-}", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+\w+", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    e = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", e)
    out = []
    for m in re.finditer(r"[a-zA-Z_:][\w:]*(?![\w:])", e):
        rest = e[m.end() :].lstrip()
        if m.group(0).lower() in _KEYWORDS or rest.startswith("("):
            continue
        if not rest.startswith("{+}"):
            out.append(m.group(0))
    return out


def _golden_names() -> set[str]:
    names: set[str] = set()
    for path in sorted(GOLDEN_DIR.glob("*.prom")):
        for line in path.read_text().splitlines():
            if line.startswith("# TYPE ") or line.startswith("# HELP "):
                names.add(line.split()[2])
            elif line and not line.startswith("#"):
                names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def _contract_sections() -> dict[str, set[str]]:
    sections: dict[str, set[str]] = {}
    current = ""
    for line in CONTRACT.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            continue
        name, kind = line.split()
        names = sections.setdefault(current, set())
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return sections


def exposed_names() -> tuple[set[str], str]:
    """(names, where from): per contract section, the golden files once they show any metric
    of that section (they are what the exporter really prints), else the contract list."""
    golden = _golden_names()
    names = set(golden)
    sources = []
    for section, listed in _contract_sections().items():
        if listed & golden:
            sources.append(f"{section}: tests/golden/*.prom")
        else:
            names |= listed
            sources.append(f"{section}: {CONTRACT.name}")
    return names, "; ".join(sources)


def rules_doc(path: Path = RULES) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {r["record"] for r in rules_doc() if "record" in r}


def dashboards() -> dict[str, dict[str, Any]]:
    out_dir = ROOT / "grafana" / "dashboards"
    return {p.name: json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))}


def panel_targets(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel."""
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def board_queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL the dashboard runs: panels, variable queries, annotations."""
    queries = [expr for _title, expr in panel_targets(board)]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            queries.append(var["query"])
    queries += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    return queries
