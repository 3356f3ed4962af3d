"""Regenerate the README's configuration and metric tables (`--write`), or check them.

The configuration table comes from the CLI's option list; the metric table from the golden
/metrics files, so the README can never list a metric the exporter does not expose.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.cli import OPTIONS, SECRETS, _show  # noqa: E402
from exporter.config import Config  # noqa: E402


def config_table() -> str:
    defaults = Config()
    rows = ["| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for opt in OPTIONS:
        flags = ", ".join(f"`{f}`" for f in opt.flags)
        default = _show(getattr(defaults, opt.field)).replace("|", "\\|")
        envs = ", ".join(f"`{e}`" for e in opt.envs)
        rows.append(f"| {flags} | {envs} | `{default}` | {opt.help.replace('|', '/')} |")
    for field, env, flag in SECRETS:
        what = field.replace("_", " ")
        rows.append(f"| `{flag}` | `{env}`, `{env}_FILE` | none | {what}: env (comma separated) "
                    "or a file, one per line; never a flag |")  # fmt: skip
    return "\n".join(rows)


def metric_table() -> str:
    families: dict[str, tuple[str, set[str], str]] = {}
    for path in sorted((ROOT / "tests" / "golden").glob("*.prom")):
        for fam in text_string_to_metric_families(path.read_text()):
            name = fam.name + ("_total" if fam.type == "counter" else "")
            labels = set().union(*(set(s.labels) for s in fam.samples)) if fam.samples else set()
            labels -= {"le", "quantile"}
            _, old_labels, _ = families.get(name, ("", set(), ""))
            families[name] = (fam.type, old_labels | labels, fam.documentation)
    rows = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for name in sorted(families):
        kind, labels, doc = families[name]
        label_text = ", ".join(f"`{x}`" for x in sorted(labels)) or "-"
        rows.append(f"| `{name}` | {kind} | {label_text} | {doc.replace('|', '/')} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    for key, table in (("config-table", config_table()), ("metric-table", metric_table())):
        pattern = re.compile(rf"(<!-- generated: {key} -->\n).*?(<!-- /generated: {key} -->)", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md lacks the <!-- generated: {key} --> markers")
        readme = pattern.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), readme)
    return readme


def main() -> int:
    path = ROOT / "README.md"
    current = path.read_text()
    wanted = render(current)
    if "--write" in sys.argv:
        path.write_text(wanted)
        return 0
    if wanted != current:
        print("README tables are stale: run `python scripts/readme_tables.py --write`")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
