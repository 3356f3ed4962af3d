"""The option table: every flag, its `CE_*` variable, Config field, parser and help line.

Flag and env names follow danihodovic/celery-exporter (all 18 of its options are here), and
values parse as its click CLI parses them: a repeatable option (`kind="multi"`) takes several
values from one variable separated by whitespace, lists inside one value are comma separated.
Secrets are not options: they come from env vars or files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _floats(text: str) -> tuple[float, ...]:
    # celery-exporter's default bucket list ends in "inf"; the +Inf bucket is always added.
    values = tuple(float(part) for part in _csv(text))
    if any(math.isnan(v) for v in values):
        raise ValueError(f"{text!r}: nan is not a bucket")
    return tuple(v for v in values if v != math.inf)


def _bool(text: str) -> bool:
    # The words click's BOOL accepts.
    lowered = text.strip().lower()
    if lowered in ("1", "true", "t", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "f", "no", "n", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


# loguru's TRACE and SUCCESS (celery-exporter logs with loguru) map to the nearest stdlib level.
LOG_LEVELS = {"TRACE": "DEBUG", "DEBUG": "DEBUG", "INFO": "INFO", "SUCCESS": "INFO",
              "WARNING": "WARNING", "WARN": "WARNING", "ERROR": "ERROR",
              "CRITICAL": "CRITICAL"}  # fmt: skip


def _log_level(text: str) -> str:
    level = LOG_LEVELS.get(text.strip().upper())
    if level is None:
        raise ValueError(f"{text!r} is not a log level ({', '.join(LOG_LEVELS)})")
    return level


def _word(text: str) -> str:
    return text.strip().lower()


def _kv_value(raw: str) -> Any:
    # Transport options such as visibility_timeout are numbers; keep strings as strings.
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _pairs(items: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not KEY=VALUE")
        out.append((key.strip(), raw.strip()))
    return out


def _kv(items: Sequence[str]) -> dict[str, Any]:
    return {key: _kv_value(raw) for key, raw in _pairs(items)}


def _labels(items: Sequence[str]) -> dict[str, str]:
    # Label values stay strings: `--static-label shard=01` keeps the leading zero.
    return dict(_pairs(items))


@dataclass(frozen=True)
class Opt:
    """One option: its flags, env var, Config field, parser and help line."""

    group: str
    flags: tuple[str, ...]
    field: str
    help: str
    # value: str -> Any; multi: list[str] -> Any (repeatable; whitespace-split in the env var);
    # flag: a switch without a value (its env var takes a boolean word).
    convert: Callable[[Any], Any] = str
    kind: str = "value"  # value | flag | multi
    metavar: str | None = None

    @property
    def env(self) -> str:
        return self.envs[0]

    @property
    def envs(self) -> tuple[str, ...]:
        # The env var mirrors each long flag name: --broker-url -> CE_BROKER_URL.
        return tuple("CE_" + f[2:].replace("-", "_").upper() for f in self.flags if f[:2] == "--")


# One row per option; kept as a table (fmt: off) so it reads as one.
# fmt: off
OPTIONS: tuple[Opt, ...] = (
    Opt("broker", ("--broker-url", "-b"), "broker_url",
        "Celery broker URL (redis, rediss, sentinel, amqp, amqps); default "
        "redis://localhost:6379/0"),
    Opt("broker", ("--result-backend",), "result_backend",
        "Redis result backend URL; default: the broker when it is Redis; '' disables"),
    Opt("broker", ("--broker-transport-option",), "broker_transport_options",
        "Broker transport option KEY=VALUE (JSON values decoded), repeatable (e.g. "
        "global_keyprefix=app1:)", _kv, "multi", "KEY=VALUE"),
    Opt("broker", ("--broker-ssl-option",), "broker_ssl_options",
        "Broker SSL option KEY=VALUE, repeatable (e.g. ca_certs=/etc/ssl/ca.pem)",
        _kv, "multi", "KEY=VALUE"),
    Opt("broker", ("--backend-transport-option",), "backend_transport_options",
        "Result backend transport option KEY=VALUE, repeatable", _kv, "multi", "KEY=VALUE"),
    Opt("broker", ("--accept-content",), "accept_content",
        "Content types accepted from the broker, comma separated; pickle is accepted with a "
        "warning and never decoded (pickled messages are skipped and counted)", _csv),
    Opt("broker", ("--retry-interval",), "retry_interval",
        "Seconds between reconnects of the event consumer after a broker error; 0: back off "
        "0.5 s doubling to 30 s. The exporter never exits on a broker outage", float),
    Opt("http", ("--host",), "host",
        "Address to listen on for /metrics, / and /api"),
    Opt("http", ("--port",), "port",
        "Port to listen on (9808, as celery-exporter)", int),
    Opt("http", ("--api-listen",), "api_listen",
        "Serve /api and the page on this HOST:PORT instead of the metrics listener"),
    Opt("http", ("--metrics-auth",), "metrics_auth",
        "Protect /metrics: none, token (bearer) or basic (any user, token as password)"),
    Opt("http", ("--metrics-render-interval",), "metrics_render_interval",
        "Render /metrics at most this often (seconds), off the request path; 0: per scrape",
        float),
    Opt("poll", ("--poll-interval",), "poll_interval",
        "Seconds between cluster polls", float),
    Opt("poll", ("--inspect-timeout",), "inspect_timeout",
        "Seconds to wait for workers to answer an inspect broadcast", float),
    Opt("poll", ("--queues", "-Q"), "queues",
        "Queues to always report, comma separated, besides those workers consume", _csv),
    Opt("poll", ("--worker-timeout",), "worker_timeout",
        "Seconds without an answer or heartbeat before celery_worker_up is 0 (a worker-offline "
        "event sets it at once); 0: never", float),
    Opt("poll", ("--purge-offline-worker-metrics",), "purge_offline_worker_metrics",
        "Seconds after which an offline worker's series disappear; 0: never", float),
    Opt("poll", ("--max-workers",), "max_workers",
        "Worker host names tracked at most; beyond it heartbeat-only hosts make room for "
        "workers that answered inspect or sent task events, the rest are counted and dropped",
        int),
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
    Opt("tasks", ("--wait-buckets", "--queue-wait-buckets"), "wait_buckets",
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
        "results, inspect); with --compat danihodovic, celery unless set"),
    Opt("tasks", ("--task-worker-label",), "task_worker_label",
        "Add a hostname label to task counters (true/false; watch cardinality)", _bool),
    Opt("tasks", ("--generic-hostname-task-sent-metric",), "generic_hostname_task_sent_metric",
        'hostname="generic" on celery_task_sent_total (with --task-worker-label)', _bool, "flag"),
    Opt("tasks", ("--generic-hostname-worker-task-metric",), "generic_hostname_worker_task_metric",
        'hostname="generic" on the other task counters (with --task-worker-label)', _bool, "flag"),
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
    Opt("api", ("--trends-step",), "trends_step",
        "Seconds per point of the /ui trends and /api/trends (60 points are kept)", float),
    Opt("api", ("--transient-exceptions",), "transient_exceptions",
        "Exception types retried by the conservative fix-it mode, comma separated", _csv),
    Opt("api", ("--show-task-args",), "show_task_args",
        "Show task args/kwargs in the API and logs (true/false)", _bool),
    Opt("api", ("--audit-max-entries",), "audit_max_entries",
        "Audit trail entries kept", int),
    Opt("metrics", ("--metric-prefix",), "metric_prefix",
        "Replaces celery_ at the start of every metric name (the exporter's own included)"),
    Opt("metrics", ("--static-label",), "static_labels",
        "Label KEY=VALUE added to every series, repeatable (e.g. cluster=eu1)",
        _labels, "multi", "KEY=VALUE"),
    Opt("metrics", ("--compat",), "compat",
        "danihodovic: serve danihodovic/celery-exporter's task, worker and queue families (its "
        "names, labels and buckets; task events counted per delivery) instead of this "
        "exporter's; none: this exporter's own", _word),
    Opt("api", ("--api-max-concurrent",), "api_max_concurrent",
        "API requests calling Redis at once (task lookups, plans, audit); beyond, 503 at once",
        int),
    Opt("beat", ("--beat-redbeat-url",), "beat_redbeat_url",
        "Redis URL of RedBeat's schedule (its redbeat_redis_url: redis, rediss, unix, "
        "sentinel, redis-sentinel); unset: no RedBeat source"),
    Opt("beat", ("--redbeat-key-prefix",), "redbeat_key_prefix",
        "RedBeat's redbeat_key_prefix"),
    Opt("beat", ("--redbeat-lock-key",), "redbeat_lock_key",
        "RedBeat's redbeat_lock_key (default: PREFIX:lock); '' when beat runs without the lock"),
    Opt("beat", ("--redbeat-sentinel-master",), "redbeat_sentinel_master",
        "Sentinel master of a sentinel:// or redis-sentinel:// --beat-redbeat-url (RedBeat's "
        "service_name; default: the master_name broker transport option, else master)"),
    Opt("beat", ("--beat-django-db-url",), "beat_django_db_url",
        "django-celery-beat database, read-only: postgresql://... or mysql://... (give a "
        "password through CE_BEAT_DJANGO_DB_URL, never on the command line)"),
    Opt("beat", ("--beat-schedule-file",), "beat_schedule_file",
        "JSON or TOML file describing the schedule of beat's default file scheduler"),
    Opt("beat", ("--beat-timezone",), "beat_timezone",
        "Celery's timezone setting: the zone of crontab entries that do not name one"),
    Opt("beat", ("--beat-interval",), "beat_interval",
        "Seconds between reads of each schedule source", float),
    Opt("beat", ("--beat-max-entries",), "beat_max_entries",
        "Schedule entries read and exported per source (soonest due first)", int),
    Opt("beat", ("--beat-grace",), "beat_grace",
        "Seconds an entry may be late before a due run counts as missed", float),
    Opt("beat", ("--beat-stale-after",), "beat_stale_after",
        "Seconds without a refresh of RedBeat's lock before beat counts as down (RedBeat "
        "refreshes it every tick, at most beat_max_loop_interval: 300 s by default)", float),
    Opt("log", ("--log-level",), "log_level",
        "TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR or CRITICAL (TRACE: DEBUG, SUCCESS: INFO)",
        _log_level),
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
    "metrics": "metric names and labels",
    "beat": "Celery beat schedules",
    "log": "logging",
}

# Secrets: env var with comma-separated tokens, or a file with one token per line.
SECRETS = (
    ("viewer_tokens", "CE_VIEWER_TOKENS", "--viewer-token-file"),
    ("operator_tokens", "CE_OPERATOR_TOKENS", "--operator-token-file"),
    ("metrics_tokens", "CE_METRICS_TOKENS", "--metrics-token-file"),
)
