"""The schedule file: beat's schedule described for the exporter, when beat keeps it in a
local shelve file (Celery's default `PersistentScheduler`) that the exporter cannot read.

JSON (`{"entries": [...]}`) or TOML (`[[entries]]`), one table per entry:

    name = "nightly-report"             # the beat entry name (unique)
    task = "reports.tasks.nightly"      # the task name it sends
    crontab = "0 2 * * *"               # or: every = 30 (seconds)
    timezone = "Europe/Berlin"          # crontab only; default --beat-timezone
    enabled = true                      # optional

Validated when the exporter starts: the first problem is one line naming the file, the entry
and the field, and the exporter does not start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exporter.beat import cron
from exporter.beat.model import BeatEntry, BeatRead, Every, Schedule
from exporter.config_checks import ConfigError

_KEYS = {"name", "task", "every", "crontab", "timezone", "enabled", "queue"}
MAX_FILE_ENTRIES = 10_000


def load(path: str, default_tz: str = "UTC") -> tuple[BeatEntry, ...]:
    """Read and validate the file; ConfigError (one line) on the first problem."""
    where = f"--beat-schedule-file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    doc = _parse(text, path, where)
    items = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a list named 'entries'")
    if len(items) > MAX_FILE_ENTRIES:
        raise ConfigError(f"{where}: {len(items)} entries, more than {MAX_FILE_ENTRIES}")
    entries: list[BeatEntry] = []
    seen: set[str] = set()
    for i, item in enumerate(items, 1):
        entry = _entry(item, f"{where}: entry {i}", default_tz)
        if entry.name in seen:
            raise ConfigError(f"{where}: entry {i}: duplicate name {entry.name!r}")
        seen.add(entry.name)
        entries.append(entry)
    return tuple(entries)


def _parse(text: str, path: str, where: str) -> Any:
    if path.endswith(".toml"):
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ConfigError(f"{where}: TOML needs Python 3.11+; use JSON") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc}); name a .toml file for TOML") from None


def _text(item: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key!r} must be a non-empty string")
    if len(value) > 200 or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{where}: {key!r} must be one line of at most 200 characters")
    return value.strip()


def _entry(item: Any, where: str, default_tz: str) -> BeatEntry:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a table with name, task and every or crontab")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        known = ", ".join(sorted(_KEYS))
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {known})")
    name = _text(item, "name", where) or ""
    where = f"{where} ({name})"
    task = _text(item, "task", where) or ""
    schedule: Schedule
    if ("every" in item) == ("crontab" in item):
        raise ConfigError(f"{where}: give exactly one of 'every' (seconds) or 'crontab'")
    if "every" in item:
        every = item["every"]
        if isinstance(every, bool) or not isinstance(every, int | float) or not every > 0:
            raise ConfigError(f"{where}: 'every' must be a positive number of seconds")
        if "timezone" in item:
            raise ConfigError(f"{where}: 'timezone' applies to a crontab only")
        schedule = Every(float(every))
    else:
        expr = _text(item, "crontab", where) or ""
        try:
            tz = cron.zone(_text(item, "timezone", where, required=False) or default_tz)
            schedule = cron.parse_expression(expr, tz)
        except cron.CronError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: 'enabled' must be true or false")
    queue = _text(item, "queue", where, required=False)
    return BeatEntry(name=name, task=task, schedule=schedule, enabled=enabled, queue=queue)


class FileReader:
    """Serves the validated entries; the file is read once, at start."""

    source = "file"

    def __init__(self, path: str, default_tz: str = "UTC") -> None:
        self.entries = load(path, default_tz)

    def read(self, now: float, max_entries: int) -> BeatRead:
        kept = self.entries[:max_entries]
        return BeatRead("file", now, kept, total=len(self.entries))

    def close(self) -> None:
        return None
