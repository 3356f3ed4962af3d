"""Bad beat options are refused at start with one line (the real CLI: exit code 2, before
binding or connecting to anything). The file source in the real daemon runs in the demo test
(tests/e2e/test_demo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli import load_config
from exporter.config_checks import ConfigError
from tests.support.exporter_process import run_cli

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--beat-timezone", "Mars/Olympus"], "--beat-timezone: unknown time zone 'Mars/Olympus'"),
        (["--beat-django-db-url", "sqlite:///x.db"], "--beat-django-db-url: unsupported scheme"),
        (["--beat-redbeat-url", "amqp://h"], "--beat-redbeat-url must be a redis://"),
        (["--beat-interval", "0"], "--beat-interval must be > 0"),
        (["--beat-max-entries", "0"], "--beat-max-entries must be >= 1"),
    ],
)  # fmt: skip
def test_bad_beat_options_are_one_line(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(args, env={})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_schedule_file_stops_the_real_cli(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"entries": [{"name": "n", "task": "t", "crontab": "0 25 * * *"}]}')
    result = run_cli("--broker-url", "redis://127.0.0.1:1/0", "--beat-schedule-file", str(bad))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"celery-ops-exporter: error: --beat-schedule-file {bad}: entry 1 (n): crontab "
        "'0 25 * * *': 25 is out of range 0-23"
    ]
