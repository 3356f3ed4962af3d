"""Builds the configured schedule sources (each optional) for `exporter.sources.build_sources`.

A bad schedule file or time zone raises ConfigError here, before the daemon starts.
"""

from __future__ import annotations

from exporter.beat import cron
from exporter.beat.source import BeatSource, Reader
from exporter.config_checks import ConfigError
from exporter.state import State


def beat_sources(state: State) -> list[BeatSource]:
    config = state.config
    try:
        tz = cron.zone(config.beat_timezone)
    except cron.CronError as exc:
        raise ConfigError(f"--beat-timezone: {exc}") from None
    readers: list[Reader] = []
    if config.beat_schedule_file:
        from exporter.beat.schedule_file import FileReader

        readers.append(FileReader(config.beat_schedule_file, config.beat_timezone))
    if config.beat_redbeat_url:
        from exporter.beat.redbeat import RedBeatReader
        from exporter.beat.redbeat_client import redis_client

        url, master = config.beat_redbeat_url, config.redbeat_sentinel_master
        transport, ssl = dict(config.broker_transport_options), dict(config.broker_ssl_options)
        readers.append(
            RedBeatReader(
                lambda: redis_client(url, master, transport, ssl),
                config.redbeat_key_prefix,
                config.redbeat_lock_key,
                tz,
            )
        )
    if config.beat_django_db_url:
        import importlib.util

        from exporter.beat.django import DjangoReader, kind_of_url

        url = config.beat_django_db_url
        driver = "psycopg" if kind_of_url(url) == "postgresql" else "pymysql"
        if importlib.util.find_spec(driver) is None:
            raise ConfigError(
                f"--beat-django-db-url needs the {driver} driver: "
                "pip install 'celery-ops-exporter[django-beat]'"
            )
        readers.append(DjangoReader(url, tz))
    return [BeatSource(state, reader) for reader in readers]
