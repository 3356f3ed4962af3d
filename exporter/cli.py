"""Command line: flags and `CE_*` environment variables -> `Config`; logging; run the daemon.

Flag and env names follow danihodovic/celery-exporter where the meaning is the same, so
switching is a one-line change. A flag beats its env var, which beats the default. Secrets
(tokens) are read only from the environment or from files, never from argv.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter import __version__
from exporter.config import DEFAULT_BROKER_URL, Config, ConfigError

log = logging.getLogger("exporter")


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


OPTIONS: tuple[Opt, ...] = (
    # broker and backend
    Opt(
        "broker",
        ("--broker-url", "-b"),
        "broker_url",
        f"Celery broker URL (redis, rediss, sentinel, amqp, amqps); default {DEFAULT_BROKER_URL}",
    ),
    Opt(
        "broker",
        ("--result-backend",),
        "result_backend",
        "Redis result backend URL; default: the broker when it is Redis; '' disables",
    ),
    Opt(
        "broker",
        ("--broker-transport-option",),
        "broker_transport_options",
        "Broker transport option KEY=VALUE, repeatable (e.g. global_keyprefix=app1:)",
        kind="multi",
        metavar="KEY=VALUE",
    ),
    Opt(
        "broker",
        ("--broker-ssl-option",),
        "broker_ssl_options",
        "Broker SSL option KEY=VALUE, repeatable (e.g. ca_certs=/etc/ssl/ca.pem)",
        kind="multi",
        metavar="KEY=VALUE",
    ),
    Opt(
        "broker",
        ("--backend-transport-option",),
        "backend_transport_options",
        "Result backend transport option KEY=VALUE, repeatable",
        kind="multi",
        metavar="KEY=VALUE",
    ),
    Opt(
        "broker",
        ("--accept-content",),
        "accept_content",
        "Content types accepted from the broker, comma separated (pickle is refused)",
        _csv,
    ),
    # HTTP
    Opt("http", ("--host",), "host", "Address to listen on for /metrics, / and /api"),
    Opt("http", ("--port",), "port", "Port to listen on (9808, as celery-exporter)", int),
    Opt(
        "http",
        ("--api-listen",),
        "api_listen",
        "Serve /api and the page on this HOST:PORT instead of the metrics listener",
    ),
    Opt(
        "http",
        ("--metrics-auth",),
        "metrics_auth",
        "Protect /metrics: none, token (bearer) or basic (any user, token as password)",
    ),
    # polling
    Opt("poll", ("--poll-interval",), "poll_interval", "Seconds between cluster polls", float),
    Opt(
        "poll",
        ("--inspect-timeout",),
        "inspect_timeout",
        "Seconds to wait for workers to answer an inspect broadcast",
        float,
    ),
    Opt(
        "poll",
        ("--queues", "-Q"),
        "queues",
        "Queues to always report, comma separated, besides those workers consume",
        _csv,
    ),
    Opt(
        "poll",
        ("--worker-timeout",),
        "worker_timeout",
        "Seconds without an answer or heartbeat before celery_worker_up is 0; 0: never",
        float,
    ),
    Opt(
        "poll",
        ("--purge-offline-worker-metrics",),
        "purge_offline_worker_metrics",
        "Seconds after which an offline worker's series disappear; 0: never",
        float,
    ),
    # ledger and sources
    Opt("tasks", ("--events",), "events", "Count tasks from Celery events (true/false)", _bool),
    Opt(
        "tasks",
        ("--enable-events-interval",),
        "enable_events_interval",
        "Broadcast enable_events every N seconds for workers started without -E; 0: never",
        float,
    ),
    Opt(
        "tasks",
        ("--results-pubsub",),
        "results_pubsub",
        "Count tasks from the Redis result backend's pub/sub (true/false)",
        _bool,
    ),
    Opt(
        "tasks",
        ("--reconcile-interval",),
        "reconcile_interval",
        "Seconds between result-backend reconciliations; 0: only at start",
        float,
    ),
    Opt("tasks", ("--reconcile-batch",), "reconcile_batch", "SCAN COUNT and MGET batch size", int),
    Opt(
        "tasks",
        ("--reconcile-max-keys-per-second",),
        "reconcile_max_keys_per_second",
        "Rate limit of the reconcile SCAN, so it never stalls Redis",
        float,
    ),
    Opt(
        "tasks",
        ("--ledger-max-tasks",),
        "ledger_max_tasks",
        "Task ids remembered for de-duplication (bounds memory)",
        int,
    ),
    Opt("tasks", ("--buckets",), "buckets", "Task runtime histogram buckets, seconds", _floats),
    Opt(
        "tasks",
        ("--wait-buckets",),
        "wait_buckets",
        "Queue wait histogram buckets, seconds",
        _floats,
    ),
    Opt(
        "tasks",
        ("--success-window",),
        "success_window",
        "Window of the success-ratio gauges, seconds",
        float,
    ),
    Opt(
        "tasks",
        ("--stuck-after",),
        "stuck_after",
        "A task running longer than this many seconds is stuck",
        float,
    ),
    Opt(
        "tasks",
        ("--max-task-names",),
        "max_task_names",
        'Distinct task names before further ones are folded into name="other"',
        int,
    ),
    Opt(
        "tasks",
        ("--max-exception-types",),
        "max_exception_types",
        'Distinct exception types before folding into exception="other"',
        int,
    ),
    Opt(
        "tasks",
        ("--task-worker-label",),
        "task_worker_label",
        "Add a hostname label to task counters (true/false; watch cardinality)",
        _bool,
    ),
    # API
    Opt("api", ("--recent-size",), "recent_size", "Recent tasks kept for /api/tasks/recent", int),
    Opt(
        "api",
        ("--recent-failed-size",),
        "recent_failed_size",
        "Recent failures kept besides those, so failures outlive successes",
        int,
    ),
    Opt("api", ("--plan-ttl",), "plan_ttl", "Seconds a fix-it plan stays approvable", float),
    Opt(
        "api",
        ("--transient-exceptions",),
        "transient_exceptions",
        "Exception types retried by the conservative fix-it mode, comma separated",
        _csv,
    ),
    Opt(
        "api",
        ("--show-task-args",),
        "show_task_args",
        "Show task args/kwargs in the API and logs (true/false)",
        _bool,
    ),
    Opt("api", ("--audit-max-entries",), "audit_max_entries", "Audit trail entries kept", int),
    # logging
    Opt("log", ("--log-level",), "log_level", "DEBUG, INFO, WARNING or ERROR"),
    Opt("log", ("--log-format",), "log_format", "text or json"),
)

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


def build_parser() -> argparse.ArgumentParser:
    defaults = Config()
    parser = argparse.ArgumentParser(
        prog="celery-ops-exporter",
        description="Prometheus exporter for Celery. Every option can also be set with the "
        "environment variable shown; a flag wins over its variable.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Tokens: CE_VIEWER_TOKENS, CE_OPERATOR_TOKENS, CE_METRICS_TOKENS (comma "
        "separated) or the *-token-file flags (one token per line). Tokens are never flags.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for opt in OPTIONS:
        default = getattr(defaults, opt.field)
        shown = _show(default)
        help_text = f"{opt.help} [env {opt.env}; default {shown}]"
        action = "append" if opt.kind == "multi" else "store"
        groups[opt.group].add_argument(
            *opt.flags,
            dest=opt.field,
            action=action,
            default=None,
            help=help_text,
            metavar=opt.metavar or opt.field.upper(),
        )
    for field_name, env, flag in SECRETS:
        groups["api" if field_name != "metrics_tokens" else "http"].add_argument(
            flag,
            dest=field_name + "_file",
            default=None,
            metavar="PATH",
            help=f"File with {field_name.replace('_', ' ')}, one per line [env {env}_FILE; "
            f"or the tokens themselves in {env}]",
        )
    return parser


def _show(default: Any) -> str:
    if isinstance(default, tuple):
        return ",".join(str(v) for v in default) or "none"
    if isinstance(default, dict):
        return "none"
    return repr(default) if default is None else str(default)


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Parse argv and env into a validated Config, or raise ConfigError."""
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = getattr(args, opt.field)
        source = f"{opt.flags[0]}"
        if raw is None and opt.env in env:
            raw = env[opt.env]
            source = opt.env
            if opt.kind == "multi":
                # Several KEY=VALUE in one variable, separated by spaces or commas.
                raw = [p for p in raw.replace(",", " ").split() if p]
        if raw is None:
            continue
        try:
            values[opt.field] = _kv(raw) if opt.kind == "multi" else opt.convert(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    for field_name, env_name, _flag in SECRETS:
        values[field_name] = _read_tokens(getattr(args, field_name + "_file"), env, env_name)
    if "accept_content" in values and "pickle" in values["accept_content"]:
        raise ConfigError("--accept-content: pickle is refused; the exporter never unpickles")
    return Config(**values).validate()


def _read_tokens(path: str | None, env: Mapping[str, str], env_name: str) -> tuple[str, ...]:
    path = path or env.get(env_name + "_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                tokens = tuple(line.strip() for line in fh if line.strip())
        except OSError as exc:
            raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from None
        if not tokens:
            raise ConfigError(f"token file {path} is empty")
        return tokens
    return _csv(env.get(env_name, ""))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level.upper())
    # Celery/kombu log every reconnect attempt at WARNING; we log outages ourselves, once.
    for noisy in ("kombu", "celery", "amqp", "apscheduler", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"celery-ops-exporter: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config)
    from exporter.daemon import Daemon  # imported late: --help stays fast

    try:
        daemon = Daemon(config)
        daemon.bind()
    except ConfigError as exc:
        print(f"celery-ops-exporter: error: {exc}", file=sys.stderr)
        return 2
    return daemon.run()
