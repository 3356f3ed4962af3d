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
from collections.abc import Mapping, Sequence
from typing import Any

from exporter import __version__
from exporter.config import Config, ConfigError
from exporter.options import GROUPS, OPTIONS, SECRETS, _csv, _kv

log = logging.getLogger("exporter")


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
    # A poll slower than --poll-interval makes APScheduler warn "skipped: maximum number of
    # running instances" on every tick. Polls never overlap by design, and
    # celery_exporter_poll_duration_seconds already shows a slow poll: keep only its errors.
    logging.getLogger("apscheduler.scheduler").setLevel(max(logging.ERROR, root.level))


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
