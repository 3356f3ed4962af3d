"""Total decoder for `--compat danihodovic`: the reading celery-exporter makes of an event that
this exporter's own parse (`decode/events.parse_event`) does not: the host part of a node
name. Never raises.
"""

from __future__ import annotations

from typing import Any

from exporter.decode import clean


def host_part(node: Any) -> str | None:
    """`worker@host` -> `host`; a name without `@` is the host itself (Celery's nodesplit)."""
    text = clean.label(node, 500)
    if text is None:
        return None
    _, sep, host = text.partition("@")
    return (host or None) if sep else text
