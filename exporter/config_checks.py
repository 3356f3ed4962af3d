"""Checks of single configuration values that need no `Config`: URL schemes, listen
addresses, API tokens, time zones. Each raises `ConfigError` with one line an operator can
act on; config.py's `Config.validate()` calls them, and so do the CLI and the HTTP setup.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from exporter.beat.cron import CronError, zone

# Schemes Celery/kombu accept for a broker, grouped by how we read queue depth.
REDIS_SCHEMES = frozenset({"redis", "rediss", "sentinel", "redis+socket", "socket"})
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp", "librabbitmq"})
EVENTS_CONSUMERS = ("auto", "celery")
DANIHODOVIC = "danihodovic"  # --compat: celery-exporter's families (exporter/compat/)
COMPAT_MODES = ("none", DANIHODOVIC)
BACKEND_REDIS_SCHEMES = frozenset({"redis", "rediss", "sentinel", "redis+socket", "socket"})
# Tokens: printable ASCII only (what an HTTP header carries unchanged), at least this long.
# 16 random hex digits are 64 bits: far beyond online guessing at any request rate.
MIN_TOKEN_LENGTH = 16


class ConfigError(ValueError):
    """A configuration mistake, worded as the one line printed before exiting."""


def url_scheme(url: str) -> str:
    """The scheme of a broker/backend URL; `sentinel://a;sentinel://b` lists take the first."""
    first = url.split(";", 1)[0]
    return urlsplit(first).scheme.lower()


def broker_kind(url: str) -> str:
    """`redis` or `amqp`: which queue-depth reader applies to this broker."""
    scheme = url_scheme(url)
    if scheme in REDIS_SCHEMES:
        return "redis"
    if scheme in AMQP_SCHEMES:
        return "amqp"
    raise ConfigError(
        f"unsupported broker URL scheme {scheme!r}: use one of "
        f"{', '.join(sorted(REDIS_SCHEMES | AMQP_SCHEMES))}"
    )


def check_tokens(role: str, tokens: tuple[str, ...]) -> None:
    """ConfigError naming the first unusable token by position, never showing the token."""
    where = f"CE_{role.upper()}_TOKENS or --{role}-token-file"
    for number, token in enumerate(tokens, 1):
        if not all(33 <= ord(c) <= 126 for c in token):
            raise ConfigError(
                f"{role} token #{number} ({where}) has a character that is not printable "
                "ASCII (spaces, accents and control characters cannot be sent in a header)"
            )
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"{role} token #{number} ({where}) has {len(token)} characters; tokens need at "
                f"least {MIN_TOKEN_LENGTH} (e.g. the output of `openssl rand -hex 16`)"
            )


def parse_listen(value: str, flag: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port), or ConfigError."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"{flag} {value!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigError(f"{flag} {value!r}: port must be 1-65535")
    check_host(host, flag)
    return host, port


def check_host(host: str, flag: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, None)
    except OSError as exc:
        raise ConfigError(f"{flag} {host!r} does not resolve: {exc}") from None


def check_timezone(name: str, flag: str) -> None:
    try:
        zone(name)
    except CronError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
