"""Metric naming options: `--metric-prefix` and `--static-label`, checked once at start.

Plain data and checks only; `collectors/relabel.py` applies them to every family on a scrape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

DEFAULT_PREFIX = "celery_"
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# Label names the exporter's own families use (tests/unit/test_options_dropin.py checks this
# against every golden file), plus those Prometheus reserves for histograms and targets. A
# static label with one of these names would clash with a series' own label.
RESERVED_LABELS = frozenset({
    "le", "quantile", "job", "instance",
    "name", "queue_name", "hostname", "exception", "method", "source", "type", "reason",
    "label", "endpoint", "code", "outcome", "action", "version", "python",
    "entry", "task", "schedule", "kind", "queue", "collector",
})  # fmt: skip


def check_prefix(prefix: str) -> str | None:
    """None, or why `prefix` cannot start a metric name."""
    if prefix and not _METRIC_NAME.fullmatch(prefix):
        return f"--metric-prefix {prefix!r} is not a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)"
    return None


def check_static_labels(labels: Mapping[str, str]) -> str | None:
    """None, or why one of the `--static-label` names cannot be used."""
    for key in labels:
        if not _LABEL_NAME.fullmatch(key) or key.startswith("__"):
            return f"--static-label {key!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not __*)"
        if key in RESERVED_LABELS:
            return (
                f"--static-label {key!r} clashes with a label the exporter sets; pick another name"
            )
    return None


def renamed(name: str, prefix: str) -> str:
    """`celery_x` -> `<prefix>x`; names not starting with celery_ stay as they are."""
    if prefix != DEFAULT_PREFIX and name.startswith(DEFAULT_PREFIX):
        return prefix + name[len(DEFAULT_PREFIX) :]
    return name
