"""Broker and backend URLs as an operator sees them: checked in one line, shown masked.

Plain string work (no kombu): a URL kombu would choke on with a traceback fails at start with
one line instead, and a URL shown on /health or in an error never carries its password.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def masked_url(url: str) -> str:
    """The URL with its password shown as ** (as kombu's as_uri() shows it)."""
    out = []
    for part in url.split(";"):
        parts = urlsplit(part)
        user, at, host = parts.netloc.rpartition("@")
        if at and ":" in user:
            parts = parts._replace(netloc=f"{user.split(':', 1)[0]}:**@{host}")
        out.append(parts.geturl())
    return ";".join(out)


def url_problem(url: str, flag: str) -> str | None:
    """None, or why `url` (a `;`-separated list for Sentinel) cannot be parsed: a port that
    is not a number, an unclosed [v6] address. The message never shows the password."""
    for part in url.split(";"):
        try:
            parts = urlsplit(part.strip())
        except ValueError as exc:
            return f"{flag} is not a URL: {exc}"
        try:
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
            return f"{flag} {shown!r}: the port is not a number 0-65535"
    return None
