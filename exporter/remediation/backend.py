"""Read one task's record from the Redis result backend (JSON only; never unpickles).

Also builds the Redis client the API shares for the backend read and the plan store: the
plan store lives in the result-backend Redis under the exporter's own key prefix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import redis

from exporter.config import Config
from exporter.sources.redisconn import backend_client

log = logging.getLogger(__name__)


class NotJson(Exception):
    """The stored record is not JSON (pickle, msgpack, compressed): we do not decode it."""


def make_client(config: Config) -> redis.Redis | None:
    """A client for the result backend (redis, rediss, socket, sentinel), or None without one."""
    if config.backend_url is None:
        return None
    # The same client settings as the ledger's sources: explicit timeouts and retries.
    return backend_client(config)


def meta_key(config: Config, task_id: str) -> str:
    return f"{config.global_keyprefix}celery-task-meta-{task_id}"


def read_task_meta(
    client: redis.Redis | None, config: Config, task_id: str
) -> Mapping[str, Any] | None:
    """The stored backend record, None when absent; NotJson when it is not JSON."""
    if client is None:
        return None
    raw = client.get(meta_key(config, task_id))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        log.info("task %s: backend record is not JSON; not decoding it", task_id)
        raise NotJson(task_id) from exc
    if not isinstance(data, dict):
        raise NotJson(task_id)
    return data


def lookup_or_none(
    client: redis.Redis | None, config: Config, task_id: str
) -> Mapping[str, Any] | None:
    """read_task_meta for the planner: undecodable or unreachable records count as unknown."""
    try:
        return read_task_meta(client, config, task_id)
    except NotJson:
        return None
    except redis.RedisError as exc:
        log.warning("result backend lookup of %s failed: %s", task_id, exc)
        return None
