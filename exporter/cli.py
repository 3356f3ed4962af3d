"""Command line: flags and `CE_*` environment variables -> `Config`; logging; run the daemon.

Flag and env names follow danihodovic/celery-exporter, so switching is changing the image.
A flag beats its env var, which beats the default. Every mistake (an unknown flag included)
is one line on stderr and exit status 2. Secrets (tokens) are read only from the environment
or from files, never from argv.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

from exporter import __version__
from exporter.config import Config
from exporter.config_checks import ConfigError
from exporter.options import GROUPS, OPTIONS, SECRETS, _csv

log = logging.getLogger("exporter")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print the usage too: one line is the promise.
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    defaults = Config()
    parser = _Parser(
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
        help_text = f"{opt.help} [env {', '.join(opt.envs)}; default {shown}]"
        kwargs: dict[str, Any] = {"dest": opt.field, "default": None, "help": help_text}
        if opt.kind == "flag":
            kwargs.update(action="store_const", const="true")
        else:
            kwargs.update(action="append" if opt.kind == "multi" else "store",
                          metavar=opt.metavar or opt.field.upper())  # fmt: skip
        groups[opt.group].add_argument(*opt.flags, **kwargs)
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
        for env_name in opt.envs if raw is None else ():
            if env.get(env_name):  # as click: an empty variable is unset
                raw, source = env[env_name], env_name
                if opt.kind == "multi":
                    # As click splits a multiple option's variable: on whitespace, so a
                    # value may hold commas (priority_steps=[0,3,6,9]).
                    raw = raw.split()
                break
        if raw is None:
            continue
        try:
            values[opt.field] = opt.convert(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    for field_name, env_name, _flag in SECRETS:
        values[field_name] = _read_tokens(getattr(args, field_name + "_file"), env, env_name)
    return Config(**values).validate()


def start_warnings(config: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """Settings that work but deserve one line at start: unknown CE_* variables (a typo is
    otherwise silently ignored) and pickle in --accept-content."""
    env = os.environ if env is None else env
    known = {name for opt in OPTIONS for name in opt.envs}
    known |= {name + suffix for _f, name, _flag in SECRETS for suffix in ("", "_FILE")}
    out = []
    unknown = sorted(k for k in env if k.startswith("CE_") and k not in known)
    if unknown:
        out.append(f"ignoring unknown environment variables: {', '.join(unknown)}")
    if "pickle" in config.accept_content:
        out.append("--accept-content pickle: accepted, but pickle is never decoded; pickled "
                   "events and results are skipped and counted in "
                   "celery_exporter_results_skipped_total")  # fmt: skip
    return out


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
    for noisy in ("kombu", "celery", "amqp", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"celery-ops-exporter: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config)
    for warning in start_warnings(config):
        log.warning("%s", warning)
    from exporter.daemon import Daemon  # imported late: --help stays fast

    try:
        daemon = Daemon(config)
        daemon.bind()
    except ConfigError as exc:
        print(f"celery-ops-exporter: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # what only Celery/kombu reject: redis://h/notadb, ?ssl_cert_reqs=x
        why = _scrub(f"{type(exc).__name__}: {exc}", config)
        print(f"celery-ops-exporter: error: cannot start with this configuration: {why}",
              file=sys.stderr)  # fmt: skip
        return 2
    return daemon.run()


def _scrub(text: str, config: Config) -> str:
    """One line, without the broker's or backend's password."""
    for url in (config.broker_url, config.result_backend or ""):
        for part in url.split(";"):
            password = urlsplit(part).password
            if password:
                text = text.replace(password, "**")
    return " ".join(text.split())
