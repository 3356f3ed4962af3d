"""Read one task's record from the Redis result backend, through the one result decoder
(`exporter.decode.records`: JSON only, never unpickles, every field cleaned).

Also builds the Redis client the API shares for the backend read and the plan store: the
plan store lives in the result-backend Redis under the exporter's own key prefix.
"""

from __future__ import annotations

import logging

import redis

from exporter.backend_redis import backend_client
from exporter.config import Config
from exporter.decode.records import read_record
from exporter.taskdata import TaskUpdate

log = logging.getLogger(__name__)


class NotJson(Exception):
    """The stored record cannot be read: not JSON (pickle, msgpack, compressed: we do not
    decode it), or JSON the decoder refuses (`reason`: invalid_json, not_a_result)."""

    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(task_id)
        self.reason = reason


def make_client(config: Config) -> redis.Redis | None:
    """A client for the result backend (redis, rediss, socket, sentinel), or None without one."""
    if config.backend_url is None:
        return None
    # The same client settings as the ledger's sources: explicit timeouts and retries.
    return backend_client(config)


def meta_key(config: Config, task_id: str) -> str:
    return f"{config.global_keyprefix}celery-task-meta-{task_id}"


def read_task_meta(client: redis.Redis | None, config: Config, task_id: str) -> TaskUpdate | None:
    """The stored backend record, decoded; None when absent; NotJson when unreadable."""
    if client is None:
        return None
    raw = client.get(meta_key(config, task_id))
    if raw is None:
        return None
    record = read_record(raw, task_id)
    if isinstance(record, str):
        log.info("task %s: backend record not decoded (%s)", task_id, record)
        raise NotJson(task_id, record)
    return record


def lookup_or_none(client: redis.Redis | None, config: Config, task_id: str) -> TaskUpdate | None:
    """read_task_meta for the planner: undecodable or unreachable records count as unknown."""
    try:
        return read_task_meta(client, config, task_id)
    except NotJson:
        return None
    except redis.RedisError as exc:
        log.warning("result backend lookup of %s failed: %s", task_id, exc)
        return None
