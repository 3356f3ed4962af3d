"""The option table: every flag, its `CE_*` variable, Config field, parser and help line.

Flag and env names follow danihodovic/celery-exporter where the meaning is the same, so
switching is a one-line change. Secrets are not options: they come from env vars or files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in _csv(text))


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def _word(text: str) -> str:
    return text.strip().lower()


def _kv_value(raw: str) -> Any:
    # Transport options such as visibility_timeout are numbers; keep strings as strings.
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _kv(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r} is not KEY=VALUE")
        out[key.strip()] = _kv_value(raw.strip())
    return out


@dataclass(frozen=True)
class Opt:
    """One option: its flags, env var, Config field, parser and help line."""

    group: str
    flags: tuple[str, ...]
    field: str
    help: str
    convert: Callable[[str], Any] = str
    kind: str = "value"  # value | flag | multi
    metavar: str | None = None

    @property
    def env(self) -> str:
        return "CE_" + self.field_env.upper()

    @property
    def field_env(self) -> str:
        # The env var mirrors the long flag name: --broker-url -> CE_BROKER_URL.
        long_flag = next(f for f in self.flags if f.startswith("--"))
        return long_flag[2:].replace("-", "_")


# One row per option; kept as a table (fmt: off) so it reads as one.
# fmt: off
OPTIONS: tuple[Opt, ...] = (
    Opt("broker", ("--broker-url", "-b"), "broker_url",
        "Celery broker URL (redis, rediss, sentinel, amqp, amqps); default "
        "redis://localhost:6379/0"),
    Opt("broker", ("--result-backend",), "result_backend",
        "Redis result backend URL; default: the broker when it is Redis; '' disables"),
    Opt("broker", ("--broker-transport-option",), "broker_transport_options",
        "Broker transport option KEY=VALUE, repeatable (e.g. global_keyprefix=app1:)",
        kind="multi", metavar="KEY=VALUE"),
    Opt("broker", ("--broker-ssl-option",), "broker_ssl_options",
        "Broker SSL option KEY=VALUE, repeatable (e.g. ca_certs=/etc/ssl/ca.pem)",
        kind="multi", metavar="KEY=VALUE"),
    Opt("broker", ("--backend-transport-option",), "backend_transport_options",
        "Result backend transport option KEY=VALUE, repeatable", kind="multi", metavar="KEY=VALUE"),
    Opt("broker", ("--accept-content",), "accept_content",
        "Content types accepted from the broker, comma separated (pickle is refused)", _csv),
    Opt("http", ("--host",), "host",
        "Address to listen on for /metrics, / and /api"),
    Opt("http", ("--port",), "port",
        "Port to listen on (9808, as celery-exporter)", int),
    Opt("http", ("--api-listen",), "api_listen",
        "Serve /api and the page on this HOST:PORT instead of the metrics listener"),
    Opt("http", ("--metrics-auth",), "metrics_auth",
        "Protect /metrics: none, token (bearer) or basic (any user, token as password)"),
    Opt("poll", ("--poll-interval",), "poll_interval",
        "Seconds between cluster polls", float),
    Opt("poll", ("--inspect-timeout",), "inspect_timeout",
        "Seconds to wait for workers to answer an inspect broadcast", float),
    Opt("poll", ("--queues", "-Q"), "queues",
        "Queues to always report, comma separated, besides those workers consume", _csv),
    Opt("poll", ("--worker-timeout",), "worker_timeout",
        "Seconds without an answer or heartbeat before celery_worker_up is 0; 0: never", float),
    Opt("poll", ("--purge-offline-worker-metrics",), "purge_offline_worker_metrics",
        "Seconds after which an offline worker's series disappear; 0: never", float),
    Opt("tasks", ("--events",), "events",
        "Count tasks from Celery events (true/false)", _bool),
    Opt("tasks", ("--events-consumer",), "events_consumer",
        "auto: a lean Redis subscriber on a Redis broker, Celery's event receiver otherwise; "
        "celery: always Celery's receiver", _word),
    Opt("tasks", ("--enable-events-interval",), "enable_events_interval",
        "Broadcast enable_events every N seconds for workers started without -E; 0: never", float),
    Opt("tasks", ("--results-pubsub",), "results_pubsub",
        "Count tasks from the Redis result backend's pub/sub (true/false)", _bool),
    Opt("tasks", ("--reconcile-interval",), "reconcile_interval",
        "Seconds between result-backend reconciliations; 0: only at start", float),
    Opt("tasks", ("--reconcile-batch",), "reconcile_batch",
        "SCAN COUNT and MGET batch size", int),
    Opt("tasks", ("--reconcile-max-keys-per-second",), "reconcile_max_keys_per_second",
        "Rate limit of the reconcile SCAN, so it never stalls Redis", float),
    Opt("tasks", ("--ledger-max-tasks",), "ledger_max_tasks",
        "Task ids remembered for de-duplication (bounds memory)", int),
    Opt("tasks", ("--buckets",), "buckets",
        "Task runtime histogram buckets, seconds", _floats),
    Opt("tasks", ("--wait-buckets",), "wait_buckets",
        "Queue wait histogram buckets, seconds", _floats),
    Opt("tasks", ("--success-window",), "success_window",
        "Window of the success-ratio gauges, seconds", float),
    Opt("tasks", ("--stuck-after",), "stuck_after",
        "A task running longer than this many seconds is stuck", float),
    Opt("tasks", ("--max-task-names",), "max_task_names",
        'Distinct task names before further ones are folded into name="other"', int),
    Opt("tasks", ("--max-exception-types",), "max_exception_types",
        'Distinct exception types before folding into exception="other"', int),
    Opt("tasks", ("--label-grace",), "label_grace",
        "Seconds a task's counts may wait for a source to name its task name and queue "
        "before they go under unknown / --default-queue-name; 0: never wait", float),
    Opt("tasks", ("--default-queue-name",), "default_queue_name",
        "queue_name of tasks whose queue no source names (task-sent events, result_extended "
        "results, inspect)"),
    Opt("tasks", ("--task-worker-label",), "task_worker_label",
        "Add a hostname label to task counters (true/false; watch cardinality)", _bool),
    Opt("tasks", ("--instance",), "instance",
        "Stable name of this exporter: names its saved counters in Redis and the event queue of "
        "Celery's receiver "
        "(default: the host name; give each concurrently running exporter its own)"),
    Opt("api", ("--recent-size",), "recent_size",
        "Recent tasks kept for /api/tasks/recent", int),
    Opt("api", ("--recent-failed-size",), "recent_failed_size",
        "Recent failures kept besides those, so failures outlive successes", int),
    Opt("api", ("--plan-ttl",), "plan_ttl",
        "Seconds a fix-it plan stays approvable", float),
    Opt("api", ("--transient-exceptions",), "transient_exceptions",
        "Exception types retried by the conservative fix-it mode, comma separated", _csv),
    Opt("api", ("--show-task-args",), "show_task_args",
        "Show task args/kwargs in the API and logs (true/false)", _bool),
    Opt("api", ("--audit-max-entries",), "audit_max_entries",
        "Audit trail entries kept", int),
    Opt("log", ("--log-level",), "log_level",
        "DEBUG, INFO, WARNING or ERROR"),
    Opt("log", ("--log-format",), "log_format",
        "text or json"),
)
# fmt: on

GROUPS = {
    "broker": "broker and result backend",
    "http": "HTTP listener",
    "poll": "cluster polling",
    "tasks": "task ledger and its sources",
    "api": "API and remediation",
    "log": "logging",
}

# Secrets: env var with comma-separated tokens, or a file with one token per line.
SECRETS = (
    ("viewer_tokens", "CE_VIEWER_TOKENS", "--viewer-token-file"),
    ("operator_tokens", "CE_OPERATOR_TOKENS", "--operator-token-file"),
    ("metrics_tokens", "CE_METRICS_TOKENS", "--metrics-token-file"),
)
