"""The daemon's configuration: one frozen `Config`, and the checks that reject a bad one at start.

Everything here is plain data. `cli.py` turns flags and environment variables into a `Config`;
`Config.validate()` raises `ConfigError` with one line an operator can act on. The checks of
single values that need no `Config` (URL schemes, listen addresses, tokens, time zones) are
in config_checks.py.
"""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass, field
from typing import Any

from exporter.config_checks import (
    BACKEND_REDIS_SCHEMES,
    COMPAT_MODES,
    EVENTS_CONSUMERS,
    REDIS_SCHEMES,
    ConfigError,
    broker_kind,
    check_host,
    check_timezone,
    check_tokens,
    parse_listen,
    url_scheme,
)
from exporter.naming import check_prefix, check_static_labels
from exporter.urls import url_problem

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
DEFAULT_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
DEFAULT_TRANSIENT_EXCEPTIONS = (
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "TimeoutError",
    "OperationalError",
    "SoftTimeLimitExceeded",
    "TemporaryError",
)


@dataclass(frozen=True)
class Config:
    # --- broker and backend -------------------------------------------------------------
    broker_url: str = DEFAULT_BROKER_URL
    # None: same as the broker when the broker is Redis, else no backend. "" disables it.
    result_backend: str | None = None
    broker_transport_options: dict[str, Any] = field(default_factory=dict)
    broker_ssl_options: dict[str, Any] = field(default_factory=dict)
    backend_transport_options: dict[str, Any] = field(default_factory=dict)
    accept_content: tuple[str, ...] = ("json",)
    retry_interval: float = 0.0  # 0: the event consumer backs off 0.5 s doubling to 30 s

    # --- HTTP -----------------------------------------------------------------------------
    host: str = "0.0.0.0"
    port: int = 9808
    # Optional second listener for /api and the page, so actions can stay internal.
    api_listen: str | None = None
    metrics_auth: str = "none"  # none | token | basic
    metrics_render_interval: float = 1.0  # exposition.py: render at most this often

    # --- polling (the scrape loop) --------------------------------------------------------
    poll_interval: float = 10.0
    inspect_timeout: float = 1.0
    queues: tuple[str, ...] = ()
    worker_timeout: float = 300.0
    purge_offline_worker_metrics: float = 600.0
    # Bounds worker host names from events and inspect. Measured: 1,000 heartbeat-only hosts
    # with 60-character names render 227 kB of /metrics and a 182 kB sitrep (20,000 unbounded
    # made 3.7 MB and 2.8 MB).
    max_workers: int = 1000

    # --- task ledger and its sources --------------------------------------------------------
    events: bool = True
    # auto: the lean Redis consumer on a Redis broker, Celery's receiver otherwise; celery: always
    events_consumer: str = "auto"
    enable_events_interval: float = 0.0  # 0: never broadcast enable_events
    results_pubsub: bool = True
    reconcile_interval: float = 300.0  # 0: only at start
    reconcile_batch: int = 1000
    reconcile_max_keys_per_second: float = 200_000.0
    ledger_max_tasks: int = 200_000
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    wait_buckets: tuple[float, ...] = DEFAULT_BUCKETS
    success_window: float = 300.0
    stuck_after: float = 600.0
    max_task_names: int = 500
    max_exception_types: int = 100
    task_worker_label: bool = False
    # hostname="generic" instead of the worker's on task counters (celery-exporter's switches).
    generic_hostname_task_sent_metric: bool = False
    generic_hostname_worker_task_metric: bool = False
    # Seconds a count may wait for its task's name and queue. Sources race: the lean events
    # consumer hands over batches up to 200 ms late, a worker's event loop buffers task
    # events (up to 24) until its next iteration, and the result pub/sub arrives on its own
    # connection, often first. 5 s covers those with a wide margin (a busy worker's loop, a
    # reconnect's backlog) and is still shorter than a scrape interval, so a rate() hardly
    # notices; a longer grace holds more tasks (memory: tasks/s x grace entries' effects).
    label_grace: float = 5.0
    default_queue_name: str = "unknown"
    # Names this exporter's event queue and persisted ledger state; "" means the host name.
    # Two exporters watching one cluster at once need different names.
    instance: str = ""

    # --- API, remediation, auth -----------------------------------------------------------
    # Tokens are never flags: they come from CE_*_TOKENS env vars or *_TOKEN_FILE files.
    viewer_tokens: tuple[str, ...] = field(default=(), repr=False)
    operator_tokens: tuple[str, ...] = field(default=(), repr=False)
    metrics_tokens: tuple[str, ...] = field(default=(), repr=False)
    recent_size: int = 1000
    recent_failed_size: int = 1000
    plan_ttl: float = 900.0
    # Seconds per point of the page's trends (60 points kept: an hour at the default).
    trends_step: float = 60.0
    transient_exceptions: tuple[str, ...] = DEFAULT_TRANSIENT_EXCEPTIONS
    show_task_args: bool = False
    audit_max_entries: int = 10_000
    # API calls to Redis in flight at once; more get 503 at once (see exporter/api/gate.py).
    api_max_concurrent: int = 8

    # --- metric names and labels ---------------------------------------------------------
    metric_prefix: str = "celery_"
    static_labels: dict[str, str] = field(default_factory=dict)
    # "danihodovic": celery-exporter's metric families instead of ours (exporter/compat/)
    compat: str = "none"

    # --- Celery beat schedules (exporter/beat) -----------------------------------------------
    beat_redbeat_url: str | None = field(default=None, repr=False)  # may hold a password
    redbeat_key_prefix: str = "redbeat:"
    redbeat_lock_key: str | None = None  # None: RedBeat's default, "<prefix>:lock"
    redbeat_sentinel_master: str | None = None  # None: master_name transport option, "master"
    beat_django_db_url: str | None = field(default=None, repr=False)  # may hold a password
    beat_schedule_file: str | None = None
    beat_timezone: str = "UTC"
    beat_interval: float = 15.0
    beat_max_entries: int = 500
    beat_grace: float = 60.0
    beat_stale_after: float = 330.0

    # --- logging ----------------------------------------------------------------------------
    log_level: str = "INFO"
    log_format: str = "text"  # text | json

    @property
    def broker_kind(self) -> str:
        return broker_kind(self.broker_url)

    @property
    def backend_url(self) -> str | None:
        """The Redis result backend to read, or None when there is none we can read."""
        if self.result_backend == "":
            return None
        if self.result_backend is None:
            return self.broker_url if self.broker_kind == "redis" else None
        return self.result_backend

    @property
    def global_keyprefix(self) -> str:
        """kombu's `global_keyprefix`; Celery's Redis backend honours the same option."""
        opts = self.backend_transport_options or self.broker_transport_options
        return str(opts.get("global_keyprefix", ""))

    @property
    def instance_id(self) -> str:
        """Stable per exporter instance: names the event queue and the ledger's Redis keys."""
        return self.instance or socket.gethostname() or "default"

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def validate(self) -> Config:
        """Return self, or raise ConfigError naming the first bad setting."""
        bad_url = url_problem(self.broker_url, "--broker-url") or (
            self.result_backend and url_problem(self.result_backend, "--result-backend")
        )
        if bad_url:
            raise ConfigError(bad_url)
        broker_kind(self.broker_url)
        backend = self.backend_url
        if backend is not None and url_scheme(backend) not in BACKEND_REDIS_SCHEMES:
            raise ConfigError(
                f"unsupported result backend scheme {url_scheme(backend)!r}: only a Redis "
                "result backend can be read (or pass --result-backend '' to disable)"
            )
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port {self.port} is not a TCP port (1-65535)")
        check_host(self.host, "--host")
        if self.api_listen is not None:
            parse_listen(self.api_listen, "--api-listen")
        for name in (
            "poll_interval",
            "inspect_timeout",
            "success_window",
            "stuck_after",
            "plan_ttl",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        for name in (
            "worker_timeout",
            "metrics_render_interval",
            "purge_offline_worker_metrics",
            "enable_events_interval",
            "reconcile_interval",
            "retry_interval",
        ):
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        if not 1 <= self.trends_step <= 3600:
            raise ConfigError(f"--trends-step must be 1 to 3600 seconds, got {self.trends_step}")
        if not 0 <= self.label_grace <= 600:
            raise ConfigError(f"--label-grace must be 0 to 600 seconds, got {self.label_grace}")
        if not self.default_queue_name.strip():
            raise ConfigError("--default-queue-name must not be empty")
        if self.inspect_timeout >= self.poll_interval * 4:
            raise ConfigError(
                f"--inspect-timeout {self.inspect_timeout} is too long for --poll-interval "
                f"{self.poll_interval} (each poll makes several broadcasts)"
            )
        for name in (
            "reconcile_batch",
            "max_workers",
            "ledger_max_tasks",
            "max_task_names",
            "max_exception_types",
            "recent_size",
            "recent_failed_size",
            "audit_max_entries",
            "api_max_concurrent",
        ):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        for name in ("buckets", "wait_buckets"):
            values = getattr(self, name)
            if not values or list(values) != sorted(set(values)) or values[0] <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be increasing positive numbers")
        for name, tokens in (
            ("viewer", self.viewer_tokens),
            ("operator", self.operator_tokens),
            ("metrics", self.metrics_tokens),
        ):
            check_tokens(name, tokens)
        if self.metrics_auth not in ("none", "token", "basic"):
            raise ConfigError(
                f"--metrics-auth must be none, token or basic, got {self.metrics_auth!r}"
            )
        if self.metrics_auth != "none" and not self.metrics_tokens:
            raise ConfigError(
                "--metrics-auth needs CE_METRICS_TOKENS or --metrics-token-file (none configured)"
            )
        if self.events_consumer not in EVENTS_CONSUMERS:
            raise ConfigError(
                f"--events-consumer must be auto or celery, got {self.events_consumer!r}"
            )
        _check_beat(self)
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"--log-format must be text or json, got {self.log_format!r}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"--log-level {self.log_level!r} is not a logging level")
        if not self.accept_content:
            raise ConfigError("--accept-content lists no content type")
        if self.compat not in COMPAT_MODES:
            raise ConfigError(f"--compat must be none or danihodovic, got {self.compat!r}")
        naming = check_prefix(self.metric_prefix) or check_static_labels(self.static_labels)
        if naming:
            raise ConfigError(naming)
        return self


def _check_beat(config: Config) -> None:
    """The beat options (exporter/beat); the schedule file is checked when it is loaded."""
    for name in ("beat_interval", "beat_stale_after"):
        value = getattr(config, name)
        if not value > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if config.beat_grace < 0:
        raise ConfigError(f"--beat-grace must be >= 0, got {config.beat_grace}")
    if config.beat_max_entries < 1:
        raise ConfigError(f"--beat-max-entries must be >= 1, got {config.beat_max_entries}")
    url = config.beat_django_db_url
    if url and url_scheme(url).split("+")[0] not in ("postgresql", "postgres", "mysql", "mariadb"):
        raise ConfigError(
            f"--beat-django-db-url: unsupported scheme {url_scheme(url)!r}: use postgresql:// "
            "or mysql://"
        )
    beat_url = config.beat_redbeat_url
    if beat_url and url_scheme(beat_url) not in REDIS_SCHEMES | {"redis-sentinel", "unix"}:
        raise ConfigError(
            "--beat-redbeat-url must be a redis://, rediss://, unix://, sentinel:// or "
            "redis-sentinel:// URL"
        )
    check_timezone(config.beat_timezone, "--beat-timezone")
