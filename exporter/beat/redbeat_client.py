"""The redis-py client of RedBeat's schedule, from --beat-redbeat-url, resolved as RedBeat's
own `get_redis` resolves `redbeat_redis_url`:

- `redis://`, `unix://`: as given.
- `rediss://`: TLS, certificates required unless said otherwise; the TLS options are those of
  --broker-ssl-option (RedBeat's `redbeat_redis_use_ssl` defaults to `broker_use_ssl`), and
  options in the URL's query win, as in redis-py.
- `redis-sentinel://` (RedBeat's scheme) and `sentinel://` (kombu's): the host(s) of the URL
  are the Sentinels (several as `sentinel://h1:26379;sentinel://h2:26379`, kombu's form; RedBeat
  itself takes them from `redbeat_redis_options["sentinels"]`), the master is
  --redbeat-sentinel-master (RedBeat's `service_name`; default: the `master_name` broker
  transport option, else RedBeat's default "master"), the URL's path its database and its
  password the master's. The `sentinel_kwargs` transport option reaches the Sentinels
  (e.g. their own password). With --broker-ssl-option set, the master is reached over TLS.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEMES = ("sentinel", "redis-sentinel")
DEFAULT_MASTER = "master"  # RedBeat's default service_name
_CERT_REQS = {"cert_none": "none", "cert_optional": "optional", "cert_required": "required",
              "none": "none", "optional": "optional", "required": "required"}  # fmt: skip
_SSL_KEYS = ("ca_certs", "cert_reqs", "certfile", "keyfile", "check_hostname", "ca_path")
TIMEOUTS = {"socket_connect_timeout": 5.0, "socket_timeout": 10.0}


def ssl_options(options: dict[str, Any]) -> dict[str, Any]:
    """Celery's broker_use_ssl (ssl_cert_reqs=CERT_REQUIRED, ca_certs=...) -> redis-py's."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        bare = key[4:] if key.startswith("ssl_") else key
        if bare not in _SSL_KEYS:
            continue
        if bare == "cert_reqs":
            text = str(getattr(value, "name", value)).strip().lower()
            value = _CERT_REQS.get(text, text)
        out["ssl_" + bare] = value
    return out


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def sentinels_of(url: str) -> tuple[list[tuple[str, int]], int, str | None]:
    """The Sentinels' addresses, the database and the master's password, from the URL(s)."""
    hosts: list[tuple[str, int]] = []
    db, password = 0, None
    for part in url.split(";"):
        parsed = urlsplit(part.strip())
        if parsed.hostname:
            hosts.append((parsed.hostname, parsed.port or 26379))
        path = parsed.path.strip("/")
        if path.isdigit():
            db = int(path)
        if parsed.password and password is None:
            password = unquote(parsed.password)
    return hosts, db, password


def redis_client(
    url: str,
    master: str | None = None,
    transport: dict[str, Any] | None = None,
    ssl: dict[str, Any] | None = None,
) -> Any:
    """A client of RedBeat's Redis (bytes replies, bounded timeouts)."""
    transport = transport or {}
    tls = ssl_options(ssl or {})
    scheme = scheme_of(url)
    if scheme in SENTINEL_SCHEMES:
        hosts, db, password = sentinels_of(url)
        name = master or str(transport.get("master_name") or DEFAULT_MASTER)
        extra: dict[str, Any] = {"ssl": True, **tls} if tls else {}
        sentinel = Sentinel(
            hosts,
            sentinel_kwargs=dict(transport.get("sentinel_kwargs") or {}) or None,
            **TIMEOUTS,
        )
        return sentinel.master_for(
            name, db=db, password=password, decode_responses=False, **TIMEOUTS, **extra
        )
    extras: dict[str, Any] = dict(TIMEOUTS)
    if scheme == "rediss":
        extras.update({"ssl_cert_reqs": "required", **tls})
        url = _celery_query(url)
    if scheme in ("redis+socket", "socket"):
        url = "unix://" + url.split("://", 1)[1]
    return redis.Redis.from_url(url, decode_responses=False, **extras)


def _celery_query(url: str) -> str:
    """`?ssl_cert_reqs=CERT_REQUIRED` (Celery's spelling) -> `required` (redis-py's)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    fixed = [(k, _CERT_REQS.get(v.lower(), v) if k == "ssl_cert_reqs" else v) for k, v in query]
    return urlunsplit(parts._replace(query=urlencode(fixed)))
